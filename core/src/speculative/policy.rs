//! How many tokens to draft: enough to pay for the verification step and the drafting,
//! and none when the step's other sequences need the compute more.
//!
//! With a per-token acceptance rate α, k drafts yield (1 − α^(k+1)) / (1 − α) tokens per
//! verification step (the kept drafts plus the target's own token). What they cost
//! depends on the adapter and the model: [`StepCosts`] measures what steps of each token
//! count take, relative to a step of one, and what a drafting step takes. Until a size
//! is measured it is modelled as 1 + β(n − 1), where β
//! ([`Tuning::extra_token_cost`](crate::kernels::Tuning)) is near 0 on a memory-bound GPU
//! and about 0.3 on a CPU adapter (measured there, it ranges from 0.25 for SmolLM2's Q4_1
//! to 0.6 for Qwen2.5-Coder's Q4_K).
//!
//! A sequence decides for the whole step it joins ([`StepLoad`]): `busy` decoding
//! sequences make `n` tokens so far, producing about `busy` tokens in `cost(n)`. Its k
//! drafts turn that into `busy − 1 + yield(k)` tokens in `cost(n + k) + k · d`, with d a
//! drafting step's cost. It drafts the k with the highest rate of tokens, if that beats
//! the plain rate by at least [`MIN_GAIN`] − 1 tokens per one-token step (5% of a lone
//! sequence's speed). One sequence alone on lavapipe with α = 0.9 drafts 5; among eight
//! busy ones its few extra tokens barely move the step's rate, so it drafts only with an
//! acceptance near 1. This is what keeps llama.cpp's measured slowdown of lookup with
//! eight slots (0.77×) away.

/// A running estimate of the per-token acceptance rate, from recent verification steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Acceptance {
    kept: f64,
    trials: f64,
}

/// Old evidence fades by this factor per verification step.
const DECAY: f64 = 0.9;

impl Default for Acceptance {
    /// Half a kept and half a rejected draft: a neutral start (0.5) that the first steps
    /// overrule.
    fn default() -> Self {
        Acceptance {
            kept: 0.5,
            trials: 1.0,
        }
    }
}

impl Acceptance {
    /// The estimated probability that a draft is kept, given that the ones before it were.
    pub fn rate(&self) -> f64 {
        self.kept / self.trials
    }

    /// Counts a verification step that kept `accepted` of `drafted` tokens: each kept one
    /// is a success, and the first rejected one (if any) a failure; the drafts after it
    /// were never tried.
    pub fn record(&mut self, accepted: usize, drafted: usize) {
        let rejected = usize::from(accepted < drafted);
        self.kept = self.kept * DECAY + accepted as f64;
        self.trials = self.trials * DECAY + (accepted + rejected) as f64;
    }
}

/// The least modelled gain worth drafting for, as a lone sequence's speed-up (among busy
/// ones, the same absolute gain in tokens per one-token step): verification also reads
/// back and samples more rows, which the cost model leaves out.
pub const MIN_GAIN: f64 = 1.05;

/// The step a sequence's drafts would join: `busy` decoding sequences, feeding `tokens`
/// tokens so far (their own, and the drafts of those that decided before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLoad {
    pub busy: usize,
    pub tokens: usize,
}

impl StepLoad {
    /// A sequence decoding alone.
    pub const ALONE: StepLoad = StepLoad { busy: 1, tokens: 1 };
}

/// Where drafting steps run, for their cost (prompt lookup drafts on the CPU, at no
/// measurable cost, and has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DraftWork {
    /// The target's drafting pass (`Engine::draft_step`), on the generation's own sequence.
    TargetLayers = 0,
    /// A draft model, on the generation's sequence in the draft engine.
    DraftModel = 1,
}

/// Tokens a verification step with `k` drafts yields on average.
fn expected_yield(rate: f64, k: usize) -> f64 {
    if rate >= 1.0 {
        return (k + 1) as f64;
    }
    (1.0 - rate.powi(k as i32 + 1)) / (1.0 - rate)
}

/// What steps cost by their token count, relative to a step of one token: measured
/// (a moving average of each size's wall time), modelled where not measured yet.
#[derive(Clone, Debug)]
pub struct StepCosts {
    /// β: what one more token adds, in steps of one, for sizes not measured.
    extra_token_cost: f64,
    /// Seconds per step, by token count (index 0 unused).
    seconds: Vec<Option<f64>>,
    /// Seconds per drafting step: of the target's first layers, and of a draft model.
    drafting: [Option<f64>; 2],
}

/// Sizes measured; larger steps are modelled.
const MEASURED_SIZES: usize = 64;
/// Weight of the newest measurement in the moving average.
const NEWEST: f64 = 0.25;

impl StepCosts {
    pub fn new(extra_token_cost: f64) -> Self {
        StepCosts {
            extra_token_cost,
            seconds: vec![None; MEASURED_SIZES + 1],
            drafting: [None; 2],
        }
    }

    /// Records that `steps` drafting steps of `work` took `seconds`.
    pub fn record_drafting(&mut self, work: DraftWork, steps: usize, seconds: f64) {
        if steps == 0 {
            return;
        }
        let per_step = seconds / steps as f64;
        let slot = &mut self.drafting[work as usize];
        *slot = Some(match *slot {
            Some(old) => old + NEWEST * (per_step - old),
            None => per_step,
        });
    }

    /// A drafting step of `work` (none: prompt lookup), in steps of one token of the
    /// target: 0 until measured (the first drafts measure it).
    pub fn draft_step(&self, work: Option<DraftWork>) -> f64 {
        match (work, self.one()) {
            (Some(work), Some(one)) => self.drafting[work as usize].map_or(0.0, |s| s / one),
            _ => 0.0,
        }
    }

    /// Records that a step of `tokens` tokens took `seconds`.
    pub fn record(&mut self, tokens: usize, seconds: f64) {
        if let Some(slot) = self.seconds.get_mut(tokens).filter(|_| tokens > 0) {
            *slot = Some(match *slot {
                Some(old) => old + NEWEST * (seconds - old),
                None => seconds,
            });
        }
    }

    /// A step of `tokens` tokens, in steps of one: measured, else modelled. The model's
    /// slope is the larger of β and the steepest measured one (so that a measured size
    /// and a modelled larger one are weighed alike), and a size never costs less than a
    /// smaller one measured.
    pub fn relative(&self, tokens: usize) -> f64 {
        let Some(one) = self.one() else {
            return self.modelled(tokens);
        };
        if let Some(n) = self.seconds.get(tokens).copied().flatten() {
            return n / one;
        }
        let measured = || {
            self.seconds
                .iter()
                .enumerate()
                .skip(2)
                .filter_map(|(n, s)| s.map(|s| (n, s / one)))
        };
        let slope = measured()
            .map(|(n, r)| (r - 1.0) / (n - 1) as f64)
            .fold(self.extra_token_cost, f64::max);
        let below = measured()
            .filter(|&(n, _)| n < tokens)
            .fold(1.0f64, |m, (_, r)| m.max(r));
        (1.0 + slope * (tokens.max(1) - 1) as f64).max(below)
    }

    /// Seconds per step of one token: measured, else estimated from the smallest size
    /// measured through the model (a generation that drafts from its first step never
    /// runs a step of one).
    fn one(&self) -> Option<f64> {
        self.seconds.iter().enumerate().find_map(|(n, s)| {
            s.filter(|&s| n > 0 && s > 0.0)
                .map(|s| s / self.modelled(n))
        })
    }

    fn modelled(&self, tokens: usize) -> f64 {
        1.0 + self.extra_token_cost * (tokens.max(1) - 1) as f64
    }
}

/// The draft length in `min..=max` that gains most over plain decoding for a sequence
/// with acceptance `rate` joining a step of `load`, with steps costing what `costs` says
/// and drafting steps of `work` (none: prompt lookup); 0 when drafting does not pay.
pub fn draft_len(
    min: usize,
    max: usize,
    rate: f64,
    load: StepLoad,
    work: Option<DraftWork>,
    costs: &StepCosts,
) -> usize {
    let busy = load.busy.max(1);
    let n = load.tokens.max(busy);
    let draft_step = costs.draft_step(work);
    // A draft model also catches up with the token the last verification added.
    let catch_up = usize::from(work == Some(DraftWork::DraftModel));
    // Tokens per one-token step: plainly, and with k drafts.
    let plain = busy as f64 / costs.relative(n);
    let mut best = (0, plain + (MIN_GAIN - 1.0));
    for k in min.max(1)..=max {
        let tokens = (busy - 1) as f64 + expected_yield(rate, k);
        let speed = tokens / (costs.relative(n + k) + (k + catch_up) as f64 * draft_step);
        if speed > best.1 {
            best = (k, speed);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptance_follows_recent_steps() {
        let mut a = Acceptance::default();
        assert_eq!(a.rate(), 0.5);
        for _ in 0..30 {
            a.record(4, 4);
        }
        assert!(a.rate() > 0.95, "{}", a.rate());
        // A rejection is one trial, where a step of four kept drafts was four: it takes
        // more of them to outweigh the past.
        for _ in 0..60 {
            a.record(0, 4);
        }
        assert!(a.rate() < 0.05, "{}", a.rate());
    }

    /// `draft_len` for prompt lookup (no drafting cost).
    fn lookup_len(min: usize, max: usize, rate: f64, load: StepLoad, costs: &StepCosts) -> usize {
        draft_len(min, max, rate, load, None, costs)
    }

    fn busy(n: usize) -> StepLoad {
        StepLoad { busy: n, tokens: n }
    }

    #[test]
    fn draft_length_scales_with_acceptance_cost_and_load() {
        let (gpu, cpu) = (StepCosts::new(0.02), StepCosts::new(0.3));
        let alone = StepLoad::ALONE;
        // A memory-bound GPU: extra tokens are nearly free, so draft the most.
        assert_eq!(lookup_len(1, 8, 0.8, alone, &gpu), 8);
        // A CPU adapter alone: a few.
        assert_eq!(lookup_len(1, 16, 0.9, alone, &cpu), 5);
        // Poor acceptance: none.
        assert_eq!(lookup_len(1, 8, 0.2, alone, &cpu), 0);
        // Eight busy sequences on a CPU adapter: a sequence's few extra tokens hardly
        // raise the step's rate, so only an acceptance near 1 drafts.
        assert_eq!(lookup_len(1, 8, 0.9, busy(8), &cpu), 0);
        assert!(lookup_len(1, 8, 0.99, busy(8), &cpu) >= 1);
        // On the GPU, eight busy sequences still draft at a good acceptance.
        assert!(lookup_len(1, 8, 0.8, busy(8), &gpu) >= 4);
        // `min` is respected: nothing below it.
        assert_eq!(lookup_len(6, 8, 0.5, alone, &cpu), 0);
        assert_eq!(expected_yield(1.0, 3), 4.0);
        assert!((expected_yield(0.5, 1) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn drafting_steps_count_once_measured() {
        let mut costs = StepCosts::new(0.3);
        costs.record(1, 0.1);
        assert_eq!(costs.draft_step(Some(DraftWork::DraftModel)), 0.0);
        let layers =
            |c: &StepCosts| draft_len(1, 8, 0.9, StepLoad::ALONE, Some(DraftWork::TargetLayers), c);
        let model =
            |c: &StepCosts| draft_len(1, 8, 0.9, StepLoad::ALONE, Some(DraftWork::DraftModel), c);
        assert_eq!(layers(&costs), 5);
        // A draft model that steps at 0.6 of the target: 1.9 tokens for 1.3 + 2 × 0.6 (a
        // catching-up step and a drafting one), no gain.
        costs.record_drafting(DraftWork::DraftModel, 4, 0.24);
        assert!((costs.draft_step(Some(DraftWork::DraftModel)) - 0.6).abs() < 1e-12);
        assert_eq!(model(&costs), 0);
        // Self-drafting through a tenth of the target's cost still pays, with fewer drafts.
        costs.record_drafting(DraftWork::TargetLayers, 3, 0.03);
        let k = layers(&costs);
        assert!((1..5).contains(&k), "{k}");
        // Lookup costs nothing to draft.
        assert_eq!(costs.draft_step(None), 0.0);
        // A generation that drafted from its first step never ran a step of one: the
        // smallest size measured stands for it, through the model (9 tokens: 3.4 steps).
        let mut never_alone = StepCosts::new(0.3);
        never_alone.record(9, 0.34);
        never_alone.record_drafting(DraftWork::DraftModel, 8, 0.48);
        assert!((never_alone.draft_step(Some(DraftWork::DraftModel)) - 0.6).abs() < 1e-12);
        assert_eq!(model(&never_alone), 0);
    }

    #[test]
    fn measured_costs_replace_the_model() {
        let mut costs = StepCosts::new(0.3);
        assert!((costs.relative(5) - 2.2).abs() < 1e-12);
        costs.record(1, 0.1);
        costs.record(5, 0.36);
        assert!((costs.relative(5) - 3.6).abs() < 1e-12);
        // Unmeasured sizes follow the steepest measured slope (0.65 per token here), and
        // never cost less than a smaller one.
        assert!((costs.relative(3) - 2.3).abs() < 1e-12);
        assert!((costs.relative(7) - 4.9).abs() < 1e-12);
        // The average follows new measurements.
        costs.record(5, 0.2);
        assert!((costs.relative(5) - 3.2).abs() < 1e-12);
        // Eight busy sequences whose step of 8 costs 4.5 steps of one: larger steps are
        // modelled at the same slope (16 tokens: 8.5), and a poor acceptance drafts nothing.
        let mut eight = StepCosts::new(0.3);
        eight.record(1, 0.1);
        eight.record(8, 0.45);
        assert!((eight.relative(16) - 8.5).abs() < 1e-12);
        assert_eq!(lookup_len(1, 8, 0.4, busy(8), &eight), 0);
        let mut modelled_only = StepCosts::new(0.3);
        modelled_only.record(1, 0.1);
        assert_eq!(lookup_len(1, 8, 0.5, StepLoad::ALONE, &modelled_only), 1);
        // Qwen2.5-Coder's Q4_K on lavapipe, as measured there (steps of 2 to 5 tokens cost
        // 1.6, 2.5, 2.4 and 3.6 steps of one): an acceptance of 0.7 drafts 2 tokens on
        // the model, and nothing once measured.
        let mut qwen = StepCosts::new(0.3);
        assert_eq!(lookup_len(1, 8, 0.7, StepLoad::ALONE, &qwen), 2);
        qwen.record(1, 0.158);
        for (n, s) in [(2, 0.26), (3, 0.39), (4, 0.387), (5, 0.565)] {
            qwen.record(n, s);
        }
        assert_eq!(lookup_len(1, 8, 0.7, StepLoad::ALONE, &qwen), 0);
    }
}
