//! Running one test: a fresh set of sequences, the depth filled untimed, then the timed
//! part (a prompt prefilled, or tokens decoded one step at a time with the sampler
//! reading each token back, as in generation), repeated after an untimed warm-up; then one
//! more run with a timestamp around every dispatch for the per-kernel breakdown.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use wisp_core::engine::{BatchEntry, Engine, HeadOutput, Logits};
use wisp_core::gpu::{KernelTime, KernelTotal, totals_by_kernel};
use wisp_core::kv::SeqId;
use wisp_core::model::ModelCost;
use wisp_core::sampling::{Sampler, SamplerConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Prompt processing: `tokens` prefilled per sequence.
    Prefill,
    /// Text generation: `tokens` decoded per sequence.
    Generate,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prefill => "prefill",
            Kind::Generate => "generate",
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Test {
    pub kind: Kind,
    pub tokens: u32,
    pub depth: u32,
    pub batch: u32,
}

impl Test {
    /// llama-bench's name (`pp512`, `tg128`) with the depth and batch when not the defaults.
    pub fn label(&self) -> String {
        let mut s = format!(
            "{}{}",
            if self.kind == Kind::Prefill {
                "pp"
            } else {
                "tg"
            },
            self.tokens
        );
        if self.depth > 0 {
            s += &format!(" @ d{}", self.depth);
        }
        if self.batch > 1 {
            s += &format!(" ×{}", self.batch);
        }
        s
    }
}

pub struct TestPlan;

impl TestPlan {
    /// Every prompt test, then every generation test, at every depth and batch.
    pub fn from_args(prompts: &[u32], gens: &[u32], depths: &[u32], batches: &[u32]) -> Vec<Test> {
        let mut tests = Vec::new();
        for (kind, lengths) in [(Kind::Prefill, prompts), (Kind::Generate, gens)] {
            for &tokens in lengths.iter().filter(|&&n| n > 0) {
                for &depth in depths {
                    for &batch in batches {
                        tests.push(Test {
                            kind,
                            tokens,
                            depth,
                            batch,
                        });
                    }
                }
            }
        }
        tests
    }
}

/// GPU time per kernel in one step, largest first (or, without timestamp queries, the
/// step's wall time alone).
#[derive(Debug, Serialize)]
pub struct Breakdown {
    /// `gpu-timestamps`, or `cpu-wall` where the adapter has no timestamp queries (then
    /// `kernels` is empty and `total_ms` is the whole step seen from the CPU).
    pub timing: &'static str,
    pub total_ms: f64,
    pub kernels: Vec<KernelTotal>,
}

#[derive(Debug, Serialize)]
pub struct TestResult {
    pub test: String,
    #[serde(flatten)]
    pub shape: Test,
    /// Tokens per second of each timed repetition (all sequences together).
    pub samples: Vec<f64>,
    pub tokens_per_second: f64,
    pub tokens_per_second_std: f64,
    /// Generation: bytes each token moves (its share of the weights, and its KV reads).
    pub bytes_per_token: Option<f64>,
    pub gb_per_second: Option<f64>,
    /// Of the adapter's streaming-read bandwidth (`wisp bench`'s probe).
    pub percent_of_bandwidth: Option<f64>,
    /// Prompt processing: arithmetic done per second.
    pub gflop_per_second: Option<f64>,
    /// One step of the test (the first prefill chunk, or one decode step at the depth).
    pub breakdown: Breakdown,
}

/// Token ids that vary and stay inside the vocabulary (xorshift; no randomness needed).
struct Tokens(u64, u32);

impl Tokens {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % self.1 as u64) as u32
    }

    fn take(&mut self, n: u32) -> Vec<u32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Sequences of one run: made fresh, removed at the end.
struct Sequences(Vec<SeqId>);

impl Sequences {
    fn new(engine: &mut Engine, n: u32) -> Sequences {
        Sequences((0..n).map(|_| engine.create_sequence()).collect())
    }

    fn remove(self, engine: &mut Engine) -> Result<()> {
        for s in self.0 {
            engine.remove_sequence(s)?;
        }
        Ok(())
    }
}

/// `test.batch` fresh sequences, each with `test.depth` tokens already in its cache.
fn at_depth(engine: &mut Engine, test: &Test, tokens: &mut Tokens) -> Result<Sequences> {
    let seqs = Sequences::new(engine, test.batch);
    if test.depth > 0 {
        let fill: Vec<Vec<u32>> = seqs.0.iter().map(|_| tokens.take(test.depth)).collect();
        prefill(engine, &seqs.0, &fill, false)?;
    }
    Ok(seqs)
}

/// Prefills `prompts[i]` into `seqs[i]`, as many tokens per step as the engine takes,
/// spread over the sequences; logits of each sequence's last token if `logits`.
fn prefill(engine: &mut Engine, seqs: &[SeqId], prompts: &[Vec<u32>], logits: bool) -> Result<()> {
    let per_step = engine.max_batch() as usize;
    let share = (per_step / seqs.len()).max(1);
    let mut done = vec![0usize; seqs.len()];
    while done.iter().zip(prompts).any(|(d, p)| *d < p.len()) {
        let mut entries = Vec::new();
        let mut room = per_step;
        for (i, p) in prompts.iter().enumerate() {
            let take = (p.len() - done[i]).min(share).min(room);
            if take == 0 {
                continue;
            }
            let end = done[i] + take;
            let last = end == p.len();
            entries.push(BatchEntry {
                seq: seqs[i],
                tokens: &p[done[i]..end],
                logits: if last && logits {
                    Logits::Last
                } else {
                    Logits::None
                },
            });
            done[i] = end;
            room -= take;
        }
        engine.step(&entries)?;
    }
    Ok(())
}

/// One run: fills the depth, then times the test. Returns the seconds of the timed part.
fn run_once(engine: &mut Engine, test: &Test, tokens: &mut Tokens) -> Result<f64> {
    let seqs = at_depth(engine, test, tokens)?;
    pollster::block_on(engine.wait_idle())?;
    let started = Instant::now();
    match test.kind {
        Kind::Prefill => {
            let prompts: Vec<Vec<u32>> = seqs.0.iter().map(|_| tokens.take(test.tokens)).collect();
            prefill(engine, &seqs.0, &prompts, true)?;
            pollster::block_on(engine.wait_idle())?;
        }
        Kind::Generate => {
            let mut samplers: Vec<Sampler> = seqs
                .0
                .iter()
                .map(|_| Sampler::new(SamplerConfig::greedy()))
                .collect::<Result<_, _>>()?;
            let mut next: Vec<u32> = seqs.0.iter().map(|_| tokens.next()).collect();
            for _ in 0..test.tokens {
                let one: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
                let entries: Vec<BatchEntry> = seqs
                    .0
                    .iter()
                    .zip(&one)
                    .map(|(&seq, t)| BatchEntry {
                        seq,
                        tokens: t,
                        logits: Logits::Last,
                    })
                    .collect();
                // Greedy: the head keeps only each row's argmax, as `wisp generate` does.
                engine.step_to(&entries, HeadOutput::Argmax)?;
                let mut refs: Vec<&mut Sampler> = samplers.iter_mut().collect();
                next = pollster::block_on(engine.sample_rows(&mut refs))?;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    seqs.remove(engine)?;
    Ok(seconds)
}

/// The test's typical step, profiled: its first prefill chunk, or one decode step at the depth.
fn breakdown(engine: &mut Engine, test: &Test, tokens: &mut Tokens) -> Result<Breakdown> {
    let seqs = at_depth(engine, test, tokens)?;
    let per_seq = match test.kind {
        Kind::Prefill => test.tokens.min((engine.max_batch() / test.batch).max(1)),
        Kind::Generate => 1,
    };
    let chunks: Vec<Vec<u32>> = seqs.0.iter().map(|_| tokens.take(per_seq)).collect();
    let entries: Vec<BatchEntry> = seqs
        .0
        .iter()
        .zip(&chunks)
        .map(|(&seq, t)| BatchEntry {
            seq,
            tokens: t,
            logits: Logits::Last,
        })
        .collect();
    // As `run_once` steps: decoding greedily keeps only the argmax.
    let output = match test.kind {
        Kind::Prefill => HeadOutput::Logits,
        Kind::Generate => HeadOutput::Argmax,
    };
    pollster::block_on(engine.wait_idle())?;
    let started = Instant::now();
    let result = match pollster::block_on(engine.profile_batch(&entries, output))? {
        Some(times) => shares(times),
        None => {
            engine.step_to(&entries, output)?;
            pollster::block_on(engine.wait_idle())?;
            Breakdown {
                timing: "cpu-wall",
                total_ms: started.elapsed().as_secs_f64() * 1e3,
                kernels: Vec::new(),
            }
        }
    };
    seqs.remove(engine)?;
    Ok(result)
}

fn shares(times: Vec<KernelTime>) -> Breakdown {
    let kernels = totals_by_kernel(times);
    Breakdown {
        timing: "gpu-timestamps",
        total_ms: kernels.iter().map(|k| k.ms).sum(),
        kernels,
    }
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

pub fn run_test(
    engine: &mut Engine,
    test: &Test,
    reps: u32,
    cost: &ModelCost,
    bandwidth_gb_s: f64,
) -> Result<TestResult> {
    let mut tokens = Tokens(
        0x9E37_79B9_7F4A_7C15 ^ test.tokens as u64,
        engine.config.vocab_size,
    );
    let total_tokens = (test.tokens * test.batch) as f64;
    // The first run builds whatever is lazily built and warms caches; it is not counted.
    run_once(engine, test, &mut tokens)?;
    let mut samples = Vec::with_capacity(reps as usize);
    for _ in 0..reps {
        samples.push(total_tokens / run_once(engine, test, &mut tokens)?);
    }
    let (mean, std) = mean_std(&samples);
    let (mut bytes_per_token, mut gb_per_second, mut percent_of_bandwidth, mut gflop_per_second) =
        (None, None, None, None);
    match test.kind {
        Kind::Generate => {
            // Token i of a sequence (0-based) attends to depth + i + 1 positions.
            let positions = test.depth as f64 + (test.tokens as f64 + 1.0) / 2.0;
            let bytes = cost.decode_bytes_per_token(test.batch, positions);
            let gbs = bytes * mean / 1e9;
            bytes_per_token = Some(bytes);
            gb_per_second = Some(gbs);
            percent_of_bandwidth = (bandwidth_gb_s > 0.0).then(|| 100.0 * gbs / bandwidth_gb_s);
        }
        Kind::Prefill => {
            let flops = cost.prefill_flops(test.tokens, test.depth) * test.batch as f64;
            gflop_per_second = Some(flops / (total_tokens / mean) / 1e9);
        }
    }
    Ok(TestResult {
        test: test.label(),
        shape: *test,
        samples,
        tokens_per_second: mean,
        tokens_per_second_std: std,
        bytes_per_token,
        gb_per_second,
        percent_of_bandwidth,
        gflop_per_second,
        breakdown: breakdown(engine, test, &mut tokens)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_llama_bench() {
        let t = |kind, tokens, depth, batch| {
            Test {
                kind,
                tokens,
                depth,
                batch,
            }
            .label()
        };
        assert_eq!(t(Kind::Prefill, 512, 0, 1), "pp512");
        assert_eq!(t(Kind::Generate, 128, 1024, 4), "tg128 @ d1024 ×4");
    }

    #[test]
    fn plan_skips_zero_lengths_and_crosses_depths_and_batches() {
        let plan = TestPlan::from_args(&[0, 64], &[16], &[0, 256], &[1, 2]);
        let labels: Vec<String> = plan.iter().map(Test::label).collect();
        assert_eq!(
            labels,
            [
                "pp64",
                "pp64 ×2",
                "pp64 @ d256",
                "pp64 @ d256 ×2",
                "tg16",
                "tg16 ×2",
                "tg16 @ d256",
                "tg16 @ d256 ×2"
            ]
        );
    }

    #[test]
    fn mean_and_sample_standard_deviation() {
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        assert!((s - 2.138_089_935).abs() < 1e-6, "{s}");
        assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
    }
}
