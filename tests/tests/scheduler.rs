//! The scheduler on a tiny model: continuous batching, the prefix cache, preemption,
//! cancellation and log-probabilities, each generation checked against what it gets
//! alone (greedy), so any mix-up of KV blocks between generations shows as wrong ids.

use std::sync::Arc;

use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::generate::{GenerateOptions, Generation, StopReason};
use wisp_core::gpu::{Gpu, KvType};
use wisp_core::sampling::SamplerConfig;
use wisp_core::scheduler::Scheduler;
use wisp_core::tokenizer::Tokenizer;
use wisp_tests::gpu::gpu;
use wisp_tests::tiny_model::{TinySpec, tiny_engine, tiny_model, tiny_tokenizer};

struct Fixture {
    gpu: Arc<Gpu>,
    model: Vec<u8>,
    tokenizer: Tokenizer,
}

impl Fixture {
    fn new() -> Self {
        let spec = TinySpec::default();
        Fixture {
            gpu: gpu(),
            model: tiny_model(&spec),
            tokenizer: tiny_tokenizer(spec.vocab),
        }
    }

    /// An engine whose pool holds `pool_tokens` positions in blocks of 16.
    fn engine(&self, pool_tokens: u32, max_batch: u32) -> Engine {
        let options = EngineOptions {
            n_ctx: 96,
            kv_pool_tokens: pool_tokens,
            max_batch,
            max_rows: 8,
            max_entries: 8,
            kv_type: Some(KvType::F32),
            ..Default::default()
        };
        tiny_engine(self.gpu.clone(), &self.model, &options)
    }

    /// Each prompt's greedy ids, alone on a fresh engine.
    fn alone(&self, prompts: &[Vec<u32>], options: &GenerateOptions) -> Vec<Vec<u32>> {
        prompts
            .iter()
            .map(|p| {
                let mut e = self.engine(512, 96);
                let mut s = Scheduler::new(&mut e, &self.tokenizer);
                s.submit(p.clone(), options).unwrap();
                run_to_end(&mut s);
                s.finish().remove(0).ids
            })
            .collect()
    }
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        // The tiny model's random weights may well pick its end token: go on regardless.
        ignore_eos: true,
        ..Default::default()
    }
}

/// A prompt of `n` ids, different for each `seed`.
fn prompt(seed: u32, n: u32) -> Vec<u32> {
    (0..n).map(|i| (i * 7 + seed * 31 + 3) % 300).collect()
}

fn step(s: &mut Scheduler<'_>) -> wisp_core::scheduler::StepReport {
    pollster::block_on(s.step(&mut |_, _| {})).unwrap()
}

fn run_to_end(s: &mut Scheduler<'_>) {
    while s.active() > 0 {
        step(s);
    }
}

fn ids(generations: Vec<Generation>) -> Vec<Vec<u32>> {
    generations.into_iter().map(|g| g.ids).collect()
}

#[test]
fn the_scheduler_gives_each_generation_what_it_gets_alone() {
    let f = Fixture::new();
    let prompts = vec![prompt(0, 17), vec![5, 9], prompt(1, 40)];
    let options = greedy(12);
    let alone = f.alone(&prompts, &options);
    // Together, with a step budget small enough that prompts are chunked alongside
    // other sequences' decoding, and the third arriving later.
    let mut e = f.engine(512, 20);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    s.submit(prompts[0].clone(), &options).unwrap();
    s.submit(prompts[1].clone(), &options).unwrap();
    step(&mut s);
    step(&mut s);
    s.submit(prompts[2].clone(), &options).unwrap();
    let mut peak = 0;
    while s.active() > 0 {
        peak = peak.max(step(&mut s).sequences);
    }
    assert_eq!(peak, 3, "all three ran in the same steps");
    assert_eq!(ids(s.finish()), alone);
    assert_eq!(
        e.kv_stats().used_blocks,
        0,
        "finished generations free their blocks"
    );
}

#[test]
fn a_full_pool_preempts_the_newest_which_then_goes_on_as_if_alone() {
    let f = Fixture::new();
    // Each needs 3 blocks of 16 by its end; the pool has 5.
    let prompts = vec![prompt(2, 20), prompt(3, 23), prompt(4, 18)];
    let options = greedy(14);
    let alone = f.alone(&prompts, &options);
    let mut e = f.engine(80, 96);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    for p in &prompts {
        s.submit(p.clone(), &options).unwrap();
    }
    let mut preempted = 0;
    while s.active() > 0 {
        preempted += step(&mut s).preempted;
    }
    assert!(preempted > 0, "the pool was too small for all three");
    assert_eq!(s.stats().preemptions as usize, preempted);
    let generations = s.finish();
    assert!(
        generations
            .iter()
            .all(|g| g.stop_reason == StopReason::MaxTokens)
    );
    assert_eq!(ids(generations), alone);
    assert_eq!(e.kv_stats().used_blocks, 0);
}

#[test]
fn at_most_max_running_generations_hold_blocks_and_the_rest_wait_in_order() {
    let f = Fixture::new();
    let prompts: Vec<Vec<u32>> = (0..4).map(|i| prompt(10 + i, 9 + i)).collect();
    let options = greedy(5);
    let alone = f.alone(&prompts, &options);
    let mut e = f.engine(512, 96);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    s.set_max_running(2);
    for p in &prompts {
        s.submit(p.clone(), &options).unwrap();
    }
    let mut first_steps = Vec::new();
    while s.active() > 0 {
        let report = step(&mut s);
        assert!(report.sequences <= 2);
        first_steps.push(s.stats().running);
    }
    assert_eq!(first_steps[0], 2);
    assert_eq!(ids(s.finish()), alone);
}

#[test]
fn a_shared_prefix_is_computed_once_and_a_salt_keeps_it_private() {
    let f = Fixture::new();
    let base = prompt(5, 40);
    let mut other_tail = base[..36].to_vec();
    other_tail.extend([1, 2, 3, 4, 5]);
    let options = greedy(6);
    let alone = f.alone(&[base.clone(), other_tail.clone()], &options);
    let mut e = f.engine(512, 96);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    let run = |s: &mut Scheduler<'_>, p: &Vec<u32>, options: &GenerateOptions| {
        let i = s.submit(p.clone(), options).unwrap();
        run_to_end(s);
        s.take(i).expect("ended")
    };
    let first = run(&mut s, &base, &options);
    assert_eq!((first.n_reused, first.n_prefilled), (0, 40));
    // The same prompt again: its two full blocks (32 tokens) come from the cache.
    let again = run(&mut s, &base, &options);
    assert_eq!((again.n_reused, again.n_prefilled), (32, 8));
    assert_eq!(again.ids, alone[0]);
    // Another prompt sharing the first 36 tokens shares the two blocks they fill.
    let other = run(&mut s, &other_tail, &options);
    assert_eq!(other.n_reused, 32);
    assert_eq!(other.ids, alone[1]);
    // A salt names blocks apart: nothing is shared with unsalted requests, or with
    // another salt, but the same salt shares.
    let salted = |salt: &str| GenerateOptions {
        cache_salt: Some(salt.into()),
        ..options.clone()
    };
    let a = run(&mut s, &base, &salted("a"));
    assert_eq!((a.n_reused, a.ids.clone()), (0, alone[0].clone()));
    assert_eq!(run(&mut s, &base, &salted("b")).n_reused, 0);
    assert_eq!(run(&mut s, &base, &salted("a")).n_reused, 32);
    let kv = s.stats().kv;
    assert_eq!(kv.used_blocks, 0);
    assert!(
        kv.cached_blocks > 0,
        "ended generations leave their blocks cached"
    );
}

#[test]
fn prompts_differing_in_their_last_block_never_see_each_others_cache() {
    // Prompts equal but for their last block, some cancelled midway, in a pool small
    // enough that cached blocks are evicted and reused while others run.
    let f = Fixture::new();
    let shared = prompt(6, 32);
    let prompts: Vec<Vec<u32>> = (0..6)
        .map(|i| {
            let mut p = shared.clone();
            p.extend(prompt(20 + i, 5 + i));
            p
        })
        .collect();
    let options = greedy(10);
    let alone = f.alone(&prompts, &options);
    let mut e = f.engine(160, 48);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    let mut submitted = Vec::new();
    for round in 0..2 {
        for (k, p) in prompts.iter().enumerate() {
            submitted.push((k, s.submit(p.clone(), &options).unwrap()));
        }
        for _ in 0..3 {
            step(&mut s);
        }
        // Cancel two of this round's generations midway.
        for &(_, i) in submitted.iter().skip(round * prompts.len()).step_by(3) {
            s.cancel(i, &mut |_| {}).unwrap();
        }
    }
    run_to_end(&mut s);
    for (k, i) in submitted {
        let g = s.take(i).expect("ended");
        if g.stop_reason == StopReason::Cancelled {
            assert!(
                alone[k].starts_with(&g.ids),
                "a cancelled generation's tokens so far"
            );
        } else {
            assert_eq!(g.ids, alone[k], "prompt {k}");
        }
    }
    assert_eq!(
        s.stats().kv.used_blocks,
        0,
        "cancelled generations freed their blocks"
    );
}

#[test]
fn cancelling_frees_a_generations_blocks_at_once() {
    let f = Fixture::new();
    let mut e = f.engine(512, 96);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    let i = s.submit(prompt(7, 37), &greedy(50)).unwrap();
    step(&mut s);
    step(&mut s);
    assert_eq!(s.stats().kv.used_blocks, 3);
    s.cancel(i, &mut |_| {}).unwrap();
    assert_eq!(s.stats().kv.used_blocks, 0);
    assert_eq!(s.take(i).unwrap().stop_reason, StopReason::Cancelled);
    assert!(s.take(i).is_none(), "taken once");
}

#[test]
fn log_probabilities_describe_the_chosen_token_and_the_best_ones() {
    let f = Fixture::new();
    let mut e = f.engine(512, 96);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    let options = GenerateOptions {
        top_logprobs: Some(3),
        ..greedy(6)
    };
    // Rows wanting them on both sides of one that does not.
    let with = s.submit(prompt(8, 12), &options).unwrap();
    let without = s.submit(prompt(9, 12), &greedy(6)).unwrap();
    let with_too = s.submit(prompt(10, 12), &options).unwrap();
    run_to_end(&mut s);
    for i in [with, with_too] {
        let g = s.take(i).unwrap();
        assert_eq!(g.logprobs.len(), g.ids.len());
        for (lp, &id) in g.logprobs.iter().zip(&g.ids) {
            assert_eq!(lp.id, id);
            assert_eq!(lp.top.len(), 3);
            // Greedy: the chosen token is the most likely one.
            assert_eq!(lp.top[0], (id, lp.logprob));
            assert!(lp.logprob <= 0.0 && lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }
    assert!(s.take(without).unwrap().logprobs.is_empty());
}

#[test]
fn a_long_prompt_arriving_never_stalls_the_others_decoding() {
    let f = Fixture::new();
    let options = greedy(12);
    let prompts = vec![prompt(11, 6), prompt(12, 80)];
    let alone = f.alone(&prompts, &options);
    // 20 tokens per step: the long prompt takes five steps to go through, beside the
    // other's decoded token in each.
    let mut e = f.engine(512, 20);
    let mut s = Scheduler::new(&mut e, &f.tokenizer);
    let decoding = s.submit(prompts[0].clone(), &options).unwrap();
    step(&mut s);
    let long = s.submit(prompts[1].clone(), &options).unwrap();
    while s.sequence(long).unwrap().ids().is_empty() {
        let before = s.sequence(decoding).unwrap().ids().len();
        let report = step(&mut s);
        assert!(report.tokens <= 20 && report.sequences == 2, "{report:?}");
        assert_eq!(s.sequence(decoding).unwrap().ids().len(), before + 1);
    }
    run_to_end(&mut s);
    assert_eq!(ids(s.finish()), alone);
}
