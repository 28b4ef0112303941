//! Where a step's time goes (on SmolLM2, or the model file `WISP_MODEL` names in the
//! cache): wall time per step (submit + sample) and the GPU
//! time of each kernel (timestamps), for a 128-token prefill, one decoded token, and
//! decode steps of B sequences at once (the scheduler's steady state).
//!
//! Usage: `cargo run --release -p wisp-tests --example step_profile -- [B ...]`
//! (default 1 4 16 64; the kernel variant follows WISP_ACT/WISP_REDUCE/WISP_TIER/WISP_TUNE/
//! WISP_LOOP_BOUNDING).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wisp::settings::EnvSettings;
use wisp_core::engine::{BatchEntry, Engine, EngineOptions, HeadOutput, Logits};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::{DeviceOptions, Gpu, KernelTime};
use wisp_core::model::FileBytes;
use wisp_core::sampling::{Sampler, SamplerConfig};

/// Per kernel name (the pipeline key's first word): total milliseconds and dispatches.
fn print_profile(label: &str, times: &[KernelTime]) {
    let mut by: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for t in times {
        let name = t.kernel.split_whitespace().next().unwrap_or("?");
        let e = by.entry(name).or_default();
        e.0 += t.nanos / 1e6;
        e.1 += 1;
    }
    let total: f64 = times.iter().map(|t| t.nanos / 1e6).sum();
    println!("{label}: GPU {total:.3} ms in {} dispatches", times.len());
    let mut rows: Vec<_> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    for (name, (ms, n)) in rows {
        println!("  {ms:>9.3} ms {:>5.1}% {n:>4}x {name}", 100.0 * ms / total);
    }
}

fn main() {
    let batches: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a batch size"))
        .collect();
    let batches = if batches.is_empty() {
        vec![1, 4, 16, 64]
    } else {
        batches
    };
    let env = EnvSettings::from_env().unwrap();
    let device = DeviceOptions {
        loop_bounding: env.loop_bounding,
        ..Default::default()
    };
    let gpu = Arc::new(pollster::block_on(Gpu::new(&device)).unwrap());
    let file_name =
        std::env::var("WISP_MODEL").unwrap_or_else(|_| "SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let bytes = std::fs::read(wisp_tests::model_path(&file_name)).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let max_b = *batches.iter().max().unwrap() as u32;
    let options = EngineOptions {
        n_ctx: 512,
        kv_pool_tokens: 512 * max_b.max(1),
        max_rows: max_b.max(32),
        max_entries: max_b.max(64),
        variant: env.variant,
        tuning: env.tuning,
        ..Default::default()
    };
    let mut e = pollster::block_on(Engine::load(
        gpu.clone(),
        &file,
        &FileBytes {
            file: &file,
            bytes: &bytes,
        },
        &options,
    ))
    .unwrap();
    println!("adapter {}, kernels {}", gpu.adapter_name(), e.variant);
    let prompt: Vec<u32> = (0..128).map(|i| 100 + (i * 37) % 4000).collect();

    print_profile(
        "prefill 128 tokens",
        &pollster::block_on(e.profile_step(&prompt))
            .unwrap()
            .expect("timestamps"),
    );
    e.reset();
    e.prefill(&prompt).unwrap();
    print_profile(
        "decode 1 token at 128",
        &pollster::block_on(e.profile_step(&[5]))
            .unwrap()
            .expect("timestamps"),
    );
    e.reset();

    for &b in &batches {
        let seqs: Vec<_> = (0..b).map(|_| e.create_sequence()).collect();
        for &s in &seqs {
            e.step(&[BatchEntry {
                seq: s,
                tokens: &prompt[..64],
                logits: Logits::None,
            }])
            .unwrap();
        }
        let mut samplers: Vec<Sampler> = (0..b)
            .map(|_| Sampler::new(SamplerConfig::greedy()).unwrap())
            .collect();
        let mut tokens = vec![7u32; b];
        let steps = 32;
        let mut run = |e: &mut Engine, tokens: &mut Vec<u32>| {
            let entries: Vec<BatchEntry> = seqs
                .iter()
                .zip(tokens.iter())
                .map(|(&seq, t)| BatchEntry {
                    seq,
                    tokens: std::slice::from_ref(t),
                    logits: Logits::Last,
                })
                .collect();
            e.step_to(&entries, HeadOutput::Argmax).unwrap();
            let mut refs: Vec<&mut Sampler> = samplers.iter_mut().collect();
            *tokens = pollster::block_on(e.sample_rows(&mut refs)).unwrap();
        };
        run(&mut e, &mut tokens); // warm-up
        let t = Instant::now();
        for _ in 0..steps {
            run(&mut e, &mut tokens);
        }
        let per_step = t.elapsed().as_secs_f64() / steps as f64;
        println!(
            "batch {b}: {:.3} ms per decode step (submit + sample), {:.1} tok/s in all",
            per_step * 1e3,
            b as f64 / per_step
        );
        let entries: Vec<BatchEntry> = seqs
            .iter()
            .zip(tokens.iter())
            .map(|(&seq, t)| BatchEntry {
                seq,
                tokens: std::slice::from_ref(t),
                logits: Logits::Last,
            })
            .collect();
        print_profile(
            &format!("batch {b} decode step"),
            &pollster::block_on(e.profile_batch(&entries, HeadOutput::Argmax))
                .unwrap()
                .expect("timestamps"),
        );
        for s in seqs {
            e.remove_sequence(s).unwrap();
        }
    }
}
