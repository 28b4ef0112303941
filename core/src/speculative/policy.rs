//! How many tokens to draft: enough to pay for the verification step, and none when the
//! step's other sequences need the compute more.
//!
//! With a per-token acceptance rate α, k drafts yield (1 − α^(k+1)) / (1 − α) tokens per
//! verification step (the kept drafts plus the target's own token). What they cost
//! depends on the adapter: a step of n tokens costs about 1 + β(n − 1) steps of one,
//! where β ([`Tuning::extra_token_cost`](crate::kernels::Tuning)) is near 0 on a
//! memory-bound GPU and about 0.3 on a CPU adapter. A step shared by `busy` decoding
//! sequences that all draft k tokens then gains
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

/// The draft length in `min..=max` that gains most over plain decoding for a sequence
/// with acceptance `rate` among `busy` decoding sequences, when a step's extra token
/// costs `extra_token_cost` of a one-token step; 0 when drafting does not pay.
pub fn draft_len(min: usize, max: usize, rate: f64, busy: usize, extra_token_cost: f64) -> usize {
    let busy = busy.max(1) as f64;
    let cost = |tokens: f64| 1.0 + extra_token_cost * (tokens - 1.0);
    let mut best = (0, MIN_GAIN);
    for k in min.max(1)..=max {
        let gain = expected_yield(rate, k) * cost(busy) / cost(busy * (k + 1) as f64);
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
        // A memory-bound GPU: extra tokens are nearly free, so draft the most.
        assert_eq!(draft_len(1, 8, 0.8, 1, 0.02), 8);
        // A CPU adapter alone: a few.
        assert_eq!(draft_len(1, 16, 0.9, 1, 0.3), 5);
        // Poor acceptance: none.
        assert_eq!(draft_len(1, 8, 0.2, 1, 0.3), 0);
        // Eight busy sequences on a CPU adapter: only for excellent acceptance.
        assert_eq!(draft_len(1, 8, 0.8, 8, 0.3), 0);
        assert!(draft_len(1, 8, 0.9, 8, 0.3) >= 1);
        // `min` is respected: nothing below it.
        assert_eq!(draft_len(6, 8, 0.5, 1, 0.3), 0);
        assert_eq!(expected_yield(1.0, 3), 4.0);
        assert!((expected_yield(0.5, 1) - 1.5).abs() < 1e-12);
    }
}
