//! How many tokens to draft: enough to pay for the verification step, and none when the
//! step's other sequences need the compute more.
//!
//! With a per-token acceptance rate α, k drafts yield (1 − α^(k+1)) / (1 − α) tokens per
//! verification step (the kept drafts plus the target's own token). What they cost
//! depends on the adapter and the model: [`StepCosts`] measures what steps of each token
//! count take, relative to a step of one. Until a size is measured it is modelled as
//! 1 + β(n − 1), where β ([`Tuning::extra_token_cost`](crate::kernels::Tuning)) is near 0
//! on a memory-bound GPU and about 0.3 on a CPU adapter (measured there, it ranges from
//! 0.25 for SmolLM2's Q4_1 to 0.6 for Qwen2.5-Coder's Q4_K). A step shared by `busy`
//! decoding sequences that all draft k tokens then gains
//! `yield(k) · cost(busy) / cost(busy · (k + 1))` over plain decoding; the policy takes
//! the k that gains most, and drafts nothing when no k gains at least [`MIN_GAIN`]. One
//! sequence alone on lavapipe with α = 0.9 drafts 5; eight busy ones draft only when
//! α > 0.86. This is what
//! keeps llama.cpp's measured slowdown of lookup with eight slots (0.77×) away.

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

/// The least modelled gain worth drafting for: verification also reads back and samples
/// more rows, which the cost model leaves out.
pub const MIN_GAIN: f64 = 1.05;

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
        let Some(one) = self.seconds[1].filter(|&s| s > 0.0) else {
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

    fn modelled(&self, tokens: usize) -> f64 {
        1.0 + self.extra_token_cost * (tokens.max(1) - 1) as f64
    }
}

/// The draft length in `min..=max` that gains most over plain decoding for a sequence
/// with acceptance `rate` among `busy` decoding sequences, with steps costing what
/// `costs` says; 0 when drafting does not pay.
pub fn draft_len(min: usize, max: usize, rate: f64, busy: usize, costs: &StepCosts) -> usize {
    let busy = busy.max(1);
    let mut best = (0, MIN_GAIN);
    for k in min.max(1)..=max {
        let gain = expected_yield(rate, k) * costs.relative(busy) / costs.relative(busy * (k + 1));
        if gain > best.1 {
            best = (k, gain);
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

    #[test]
    fn draft_length_scales_with_acceptance_cost_and_load() {
        let (gpu, cpu) = (StepCosts::new(0.02), StepCosts::new(0.3));
        // A memory-bound GPU: extra tokens are nearly free, so draft the most.
        assert_eq!(draft_len(1, 8, 0.8, 1, &gpu), 8);
        // A CPU adapter alone: a few.
        assert_eq!(draft_len(1, 16, 0.9, 1, &cpu), 5);
        // Poor acceptance: none.
        assert_eq!(draft_len(1, 8, 0.2, 1, &cpu), 0);
        // Eight busy sequences on a CPU adapter: only for excellent acceptance.
        assert_eq!(draft_len(1, 8, 0.8, 8, &cpu), 0);
        assert!(draft_len(1, 8, 0.9, 8, &cpu) >= 1);
        // `min` is respected: nothing below it.
        assert_eq!(draft_len(6, 8, 0.5, 1, &cpu), 0);
        assert_eq!(expected_yield(1.0, 3), 4.0);
        assert!((expected_yield(0.5, 1) - 1.5).abs() < 1e-12);
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
        // Eight busy sequences whose step of 8 costs 4.5 steps of one: doubling them with
        // one draft each is modelled at the same slope (8.5), so a poor acceptance drafts
        // nothing (on the model alone, 1 + 0.3 × 15 = 5.5 would have paid for k = 1).
        let mut busy = StepCosts::new(0.3);
        busy.record(1, 0.1);
        busy.record(8, 0.45);
        assert!((busy.relative(16) - 8.5).abs() < 1e-12);
        assert_eq!(draft_len(1, 8, 0.4, 8, &busy), 0);
        let mut modelled_only = StepCosts::new(0.3);
        modelled_only.record(1, 0.1);
        assert_eq!(draft_len(1, 8, 0.5, 1, &modelled_only), 1);
        // Qwen2.5-Coder's Q4_K on lavapipe, as measured there (steps of 2 to 5 tokens cost
        // 1.6, 2.5, 2.4 and 3.6 steps of one): an acceptance of 0.7 drafts 2 tokens on
        // the model, and nothing once measured.
        let mut qwen = StepCosts::new(0.3);
        assert_eq!(draft_len(1, 8, 0.7, 1, &qwen), 2);
        qwen.record(1, 0.158);
        for (n, s) in [(2, 0.26), (3, 0.39), (4, 0.387), (5, 0.565)] {
            qwen.record(n, s);
        }
        assert_eq!(draft_len(1, 8, 0.7, 1, &qwen), 0);
    }
}
