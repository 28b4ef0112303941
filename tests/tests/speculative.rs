//! Speculative decoding on tiny models: greedy output equal to plain decoding for every
//! drafter and draft length, the sampled distribution unchanged (and a wrong rule
//! caught), and the cache after many rejections equal to a fresh prefill with no block
//! lost.

use std::sync::Arc;

use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::generate::{GenerateOptions, Generation, Generator};
use wisp_core::gpu::{Gpu, KvType};
use wisp_core::quant::GgmlType;
use wisp_core::sampling::SamplerConfig;
use wisp_core::scheduler::Scheduler;
use wisp_core::speculative::{DrafterKind, ResampleRule, SpeculationOptions};
use wisp_core::tokenizer::Tokenizer;
use wisp_tests::gpu::gpu;
use wisp_tests::stats::homogeneity;
use wisp_tests::tiny_model::{TinySpec, tiny_engine, tiny_model, tiny_tokenizer};

struct Fixture {
    gpu: Arc<Gpu>,
    model: Vec<u8>,
    tokenizer: Tokenizer,
}

impl Fixture {
    fn new(spec: TinySpec) -> Self {
        Fixture {
            gpu: gpu(),
            model: tiny_model(&spec),
            tokenizer: tiny_tokenizer(spec.vocab),
        }
    }

    /// An engine with room for `parallel` generations that each verify up to 9 rows,
    /// with a drafting pass through the first layer.
    fn engine(&self, parallel: u32) -> Engine {
        let options = EngineOptions {
            n_ctx: 256,
            kv_pool_tokens: 256 * parallel,
            max_batch: 16 * parallel,
            max_rows: 9 * parallel,
            max_entries: parallel,
            kv_type: Some(KvType::F32),
            self_draft_layers: Some(1),
            ..Default::default()
        };
        tiny_engine(self.gpu.clone(), &self.model, &options)
    }

    /// Runs every prompt with `options` (each with its own seed: `seed + i`) on one
    /// scheduler, `parallel` at a time, and returns the generations in order.
    fn run(
        &self,
        prompts: &[Vec<u32>],
        options: &GenerateOptions,
        parallel: u32,
    ) -> Vec<Generation> {
        self.run_with_draft(prompts, options, parallel, None)
    }

    /// [`Fixture::run`] with a draft model.
    fn run_with_draft(
        &self,
        prompts: &[Vec<u32>],
        options: &GenerateOptions,
        parallel: u32,
        draft: Option<&mut Engine>,
    ) -> Vec<Generation> {
        let mut engine = self.engine(parallel);
        let mut s = Scheduler::new(&mut engine, &self.tokenizer);
        if let Some(draft) = draft {
            s.set_draft_model(draft, &self.tokenizer).unwrap();
        }
        s.set_max_running(parallel as usize);
        for (i, p) in prompts.iter().enumerate() {
            let mut o = options.clone();
            o.sampler.seed = options.sampler.seed.wrapping_add(i as u64);
            s.submit(p.clone(), &o).unwrap();
        }
        while s.active() > 0 {
            pollster::block_on(s.step(&mut |_, _| {})).unwrap();
        }
        s.finish()
    }
}

fn options(sampler: SamplerConfig, max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampler,
        ignore_eos: true,
        ..Default::default()
    }
}

fn speculating(
    base: &GenerateOptions,
    drafter: DrafterKind,
    k: usize,
    rule: ResampleRule,
) -> GenerateOptions {
    GenerateOptions {
        speculation: Some(SpeculationOptions {
            adaptive: false,
            resample: rule,
            ..SpeculationOptions::new(drafter, k)
        }),
        ..base.clone()
    }
}

/// Prompts that repeat themselves, so lookup finds n-grams to propose.
fn repetitive_prompts(vocab: u32) -> Vec<Vec<u32>> {
    (0..3u32)
        .map(|seed| {
            let motif: Vec<u32> = (0..5)
                .map(|i| (i * 7 + seed * 13 + 1) % (vocab - 1))
                .collect();
            motif.iter().cycle().take(17).copied().collect()
        })
        .collect()
}

/// Each generation's ids.
fn ids(generations: Vec<Generation>) -> Vec<Vec<u32>> {
    generations.into_iter().map(|g| g.ids).collect()
}

#[test]
fn greedy_output_is_plain_decodings_for_every_drafter_and_draft_length() {
    let spec = TinySpec::default();
    let f = Fixture::new(spec.clone());
    let prompts = repetitive_prompts(spec.vocab);
    let plain = options(SamplerConfig::greedy(), 40);
    let expected = ids(f.run(&prompts, &plain, 3));
    for drafter in [
        DrafterKind::Lookup { ngram: 3 },
        DrafterKind::SelfDraft { layers: 1 },
    ] {
        for k in [1, 2, 4, 8] {
            let o = speculating(&plain, drafter, k, ResampleRule::Residual);
            let got = f.run(&prompts, &o, 3);
            let drafted: u64 = got.iter().map(|g| g.speculation.unwrap().drafted).sum();
            assert!(drafted > 0, "{drafter:?} k={k} drafted nothing");
            assert_eq!(ids(got), expected, "{drafter:?} with k = {k}");
        }
    }
}

/// A smaller model of the same vocabulary drafts, and greedy output is still plain
/// decoding's; the draft engine's sequences are gone once the scheduler finishes.
#[test]
fn a_draft_model_leaves_greedy_output_unchanged() {
    let spec = TinySpec::default();
    let f = Fixture::new(spec.clone());
    let draft_model = tiny_model(&draft_spec(&spec));
    let prompts = repetitive_prompts(spec.vocab);
    let plain = options(SamplerConfig::greedy(), 40);
    let expected = ids(f.run(&prompts, &plain, 3));
    for k in [1, 2, 4, 8] {
        let mut draft = tiny_engine(f.gpu.clone(), &draft_model, &draft_options(256, 3));
        let o = speculating(&plain, DrafterKind::Model, k, ResampleRule::Residual);
        let got = f.run_with_draft(&prompts, &o, 3, Some(&mut draft));
        let stats: Vec<_> = got.iter().map(|g| g.speculation.unwrap()).collect();
        assert!(stats.iter().all(|s| s.drafted > 0), "k={k}: {stats:?}");
        assert_eq!(ids(got), expected, "a draft model with k = {k}");
        let kv = draft.kv_stats();
        assert_eq!(kv.used_blocks, 0, "the draft engine keeps blocks: {kv:?}");
    }
}

/// A draft model for `target`: one narrower Q8_0 layer, the same vocabulary.
fn draft_spec(target: &TinySpec) -> TinySpec {
    TinySpec {
        n_layer: 1,
        n_embd: 64,
        n_head: 4,
        n_kv_head: 2,
        types: vec![GgmlType::Q8_0],
        ..target.clone()
    }
}

/// A draft engine for `parallel` generations of up to 256 tokens.
fn draft_options(n_ctx: u32, parallel: u32) -> EngineOptions {
    EngineOptions {
        n_ctx,
        kv_pool_tokens: 256 * parallel,
        max_batch: 256.max(16 * parallel),
        max_rows: parallel,
        max_entries: parallel,
        kv_type: Some(KvType::F32),
        ..Default::default()
    }
}

/// A draft model with another vocabulary, a shorter context or another device is
/// refused, with the difference named.
#[test]
fn unfit_draft_models_are_refused_by_what_differs() {
    let spec = TinySpec::default();
    let f = Fixture::new(spec.clone());
    let mut target = f.engine(1);
    let mut refusal = |draft: &mut Engine, tokenizer: &Tokenizer| -> String {
        let mut s = Scheduler::new(&mut target, &f.tokenizer);
        match s.set_draft_model(draft, tokenizer) {
            Ok(()) => panic!("accepted an unfit draft model"),
            Err(e) => e.to_string(),
        }
    };
    let other_vocab = TinySpec {
        vocab: 300,
        ..spec.clone()
    };
    let mut draft = tiny_engine(
        f.gpu.clone(),
        &tiny_model(&other_vocab),
        &draft_options(256, 3),
    );
    let err = refusal(&mut draft, &tiny_tokenizer(300));
    assert!(
        err.contains("at token 300: no such token in the draft"),
        "{err}"
    );
    let mut short = tiny_engine(f.gpu.clone(), &f.model, &draft_options(64, 3));
    let err = refusal(&mut short, &f.tokenizer);
    assert!(
        err.contains("context (64 tokens) is shorter than the model's (256)"),
        "{err}"
    );
    let elsewhere = wisp_tests::gpu::gpu_with_binding_limit(1 << 26);
    let mut far = tiny_engine(elsewhere, &f.model, &draft_options(256, 3));
    let err = refusal(&mut far, &f.tokenizer);
    assert!(err.contains("another device"), "{err}");
    // A generation asking for a draft model the scheduler lacks is refused at once.
    let mut s = Scheduler::new(&mut target, &f.tokenizer);
    let o = speculating(
        &options(SamplerConfig::greedy(), 4),
        DrafterKind::Model,
        2,
        ResampleRule::Residual,
    );
    let err = s.submit(vec![1, 2, 3], &o).unwrap_err().to_string();
    assert!(err.contains("--draft MODEL"), "{err}");
}

/// Sampled generations, `GENERATIONS` of `LENGTH` tokens each (20,000 tokens), on a
/// 10-token vocabulary: small, so drafts are likely tokens and a biased rule shows.
const GENERATIONS: usize = 4000;
const LENGTH: usize = 5;

fn distribution_spec() -> TinySpec {
    TinySpec {
        vocab: 10,
        ..TinySpec::default()
    }
}

/// Prompts that each start with another token, then run through the vocabulary.
fn distribution_prompts() -> Vec<Vec<u32>> {
    (0..GENERATIONS)
        .map(|i| {
            let mut p = vec![(i % 9) as u32];
            p.extend([1, 2, 3, 4, 5, 6, 7, 8, 0, 2, 4, 6, 8, 1, 3, 5, 7]);
            p
        })
        .collect()
}

/// How often each token comes at each position.
fn histogram(generations: &[Generation], vocab: u32) -> Vec<Vec<u64>> {
    let mut h = vec![vec![0u64; vocab as usize]; LENGTH];
    for g in generations {
        assert_eq!(g.ids.len(), LENGTH);
        for (pos, &t) in g.ids.iter().enumerate() {
            h[pos][t as usize] += 1;
        }
    }
    h
}

/// Samples with `sampler`, without speculation and then with `drafter` at k = 4 under
/// the exact rule and under the wrong one, and checks each position's token against
/// plain decoding with Pearson's homogeneity test: every p-value > 0.01 for the exact
/// rule, one < 1e-4 for the wrong rule (so the test can fail).
fn assert_same_distribution(
    sampler: SamplerConfig,
    drafter: DrafterKind,
    draft_model: Option<&TinySpec>,
) {
    let spec = distribution_spec();
    let f = Fixture::new(spec.clone());
    let prompts = distribution_prompts();
    let parallel = 64;
    let plain = options(sampler, LENGTH);
    let base = histogram(&f.run(&prompts, &plain, parallel), spec.vocab);
    let draft_model = draft_model.map(tiny_model);
    let p_values = |rule: ResampleRule| -> Vec<f64> {
        let o = speculating(&plain, drafter, 4, rule);
        let mut draft = draft_model
            .as_ref()
            .map(|m| tiny_engine(f.gpu.clone(), m, &draft_options(256, parallel)));
        let gens = f.run_with_draft(&prompts, &o, parallel, draft.as_mut());
        let verified: u64 = gens.iter().map(|g| g.speculation.unwrap().drafted).sum();
        assert!(verified > 2000, "only {verified} drafts verified");
        let h = histogram(&gens, spec.vocab);
        // The first token comes from the prompt's step, before any draft.
        (1..LENGTH)
            .map(|pos| homogeneity(&base[pos], &h[pos]).2)
            .collect()
    };
    let exact = p_values(ResampleRule::Residual);
    let broken = p_values(ResampleRule::TargetOnly);
    eprintln!("{drafter:?}: p-values per position: exact rule {exact:?}, wrong rule {broken:?}");
    assert!(
        exact.iter().all(|&p| p > 0.01),
        "{drafter:?}: p-values per position with the exact rule: {exact:?}"
    );
    assert!(
        broken.iter().any(|&p| p < 1e-4),
        "{drafter:?}: the wrong rule went unnoticed: p-values {broken:?}"
    );
}

/// The token at each of the first positions has the same distribution with and without
/// prompt lookup (a point-mass proposal), at temperature 0.7 and top-p 0.9.
#[test]
fn sampled_tokens_keep_the_targets_distribution() {
    let sampler = SamplerConfig {
        temperature: 0.7,
        top_p: 0.9,
        top_k: 0,
        min_p: 0.0,
        seed: 1000,
        ..SamplerConfig::default()
    };
    assert_same_distribution(sampler, DrafterKind::Lookup { ngram: 2 }, None);
}

/// The whole chain (temperature, top-k, top-p, min-p and all three penalties) with
/// drafters that propose from a distribution of their own: the target's first layer,
/// and a smaller model.
#[test]
fn drafts_drawn_from_a_distribution_keep_the_whole_chains_distribution() {
    let sampler = SamplerConfig {
        temperature: 0.7,
        top_k: 6,
        top_p: 0.9,
        min_p: 0.05,
        repeat_penalty: 1.3,
        presence_penalty: 0.3,
        frequency_penalty: 0.2,
        penalty_last_n: 8,
        seed: 2000,
    };
    assert_same_distribution(sampler, DrafterKind::SelfDraft { layers: 1 }, None);
    let draft = draft_spec(&distribution_spec());
    assert_same_distribution(sampler, DrafterKind::Model, Some(&draft));
}

/// After 50 verification steps with rejections, the caller's cache holds exactly the
/// kept tokens: the next token's logits equal a fresh prefill's, and no block is held
/// beyond those tokens.
#[test]
fn rejected_drafts_leave_no_trace_in_the_cache() {
    let spec = TinySpec::default();
    let f = Fixture::new(spec.clone());
    let prompt = repetitive_prompts(spec.vocab).remove(0);
    let sampler = SamplerConfig {
        temperature: 1.0,
        seed: 5,
        ..SamplerConfig::default()
    };
    let o = speculating(
        &options(sampler, 200),
        DrafterKind::Lookup { ngram: 2 },
        4,
        ResampleRule::Residual,
    );
    let engine = f.engine(1);
    let blocks = engine.kv_stats().blocks;
    let mut generator = Generator::new(engine, f.tokenizer.clone());
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let g = pollster::block_on(generator.generate(&prompt, &o, &cancel, &mut |_| {})).unwrap();
    let stats = g.speculation.unwrap();
    assert!(stats.steps >= 50, "{stats:?}");
    assert!(stats.accepted < stats.drafted, "no rejection: {stats:?}");
    let kept: Vec<u32> = prompt
        .iter()
        .chain(&g.ids[..g.ids.len() - 1])
        .copied()
        .collect();
    assert_eq!(generator.cached_ids(), &kept[..]);
    let engine = generator.engine_mut();
    assert_eq!(engine.position() as usize, kept.len());
    let kv = engine.kv_stats();
    assert_eq!(
        kv.blocks - kv.free_blocks,
        (kept.len() as u32).div_ceil(kv.block_size),
        "blocks held beyond the kept tokens ({blocks} in all)"
    );
    engine.decode(*g.ids.last().unwrap()).unwrap();
    let continued = pollster::block_on(engine.logits()).unwrap();
    let mut fresh = f.engine(1);
    let all: Vec<u32> = kept.iter().chain(g.ids.last()).copied().collect();
    let rows = pollster::block_on(fresh.prefill_logits(&all)).unwrap();
    let expected = rows.last().unwrap();
    let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = continued
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-4 * scale.max(1.0),
        "logits after the kept tokens differ from a fresh prefill by {worst} (scale {scale})"
    );
}
