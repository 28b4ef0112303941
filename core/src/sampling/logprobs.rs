//! Log-probabilities of sampled tokens, as the OpenAI API reports them: the model's
//! distribution at temperature 1 over the raw logits (before penalties and truncation),
//! so they describe the model, not the sampler settings of one request.

use serde::Serialize;

/// The most alternatives a token may list (the OpenAI API's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One sampled token's log-probability and the most likely tokens at its position.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenLogprobs {
    pub id: u32,
    pub logprob: f32,
    /// The `k` most likely tokens with their log-probabilities, most likely first (ties:
    /// lower id first).
    pub top: Vec<(u32, f32)>,
}

/// One logits row's log-softmax, kept until the row's token is chosen.
pub struct RowLogprobs {
    logits: Vec<f32>,
    log_sum_exp: f32,
}

impl RowLogprobs {
    /// The distribution of `logits` (one row, the whole vocabulary).
    pub fn new(logits: Vec<f32>) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // In f64: a 150k-term sum in f32 loses digits the top tokens' logprobs show.
        let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
        RowLogprobs {
            log_sum_exp: max + sum.ln() as f32,
            logits,
        }
    }

    pub fn logprob(&self, id: u32) -> f32 {
        self.logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - self.log_sum_exp)
    }

    /// The record of token `id` with the `k` most likely tokens (`k` at most
    /// [`MAX_TOP_LOGPROBS`]).
    pub fn token(&self, id: u32, k: usize) -> TokenLogprobs {
        let k = k.min(MAX_TOP_LOGPROBS).min(self.logits.len());
        let mut order: Vec<u32> = (0..self.logits.len() as u32).collect();
        let better = |a: &u32, b: &u32| {
            self.logits[*b as usize]
                .total_cmp(&self.logits[*a as usize])
                .then(a.cmp(b))
        };
        if k > 0 && k < order.len() {
            order.select_nth_unstable_by(k - 1, better);
        }
        order.truncate(k);
        order.sort_by(better);
        TokenLogprobs {
            id,
            logprob: self.logprob(id),
            top: order.into_iter().map(|t| (t, self.logprob(t))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_normalised_log_softmax_with_the_best_first() {
        let row = RowLogprobs::new(vec![1.0, 3.0, 3.0, -2.0, 0.5]);
        let total: f64 = (0..5).map(|i| (row.logprob(i) as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        let t = row.token(4, 3);
        assert_eq!(t.id, 4);
        assert!((t.logprob - (0.5 - (row.log_sum_exp))).abs() < 1e-6);
        // Ties go to the lower id.
        assert_eq!(t.top.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(row.token(0, 0).top.is_empty());
        assert_eq!(row.token(0, 99).top.len(), 5);
        assert_eq!(row.logprob(77), f32::NEG_INFINITY);
    }
}
