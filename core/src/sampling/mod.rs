//! Sampling: the CPU side of the sampler chain, penalties, seeds and stop strings.
//!
//! # How sampling splits between GPU and CPU
//!
//! Logits stay on the GPU; the engine never reads back the whole vocabulary per token.
//!
//! 1. **Penalties** run on the GPU. [`Sampler::penalty_list`] gives the distinct tokens of the
//!    last `penalty_last_n` accepted tokens with their counts ([`PenaltyEntry`], the kernel's
//!    own struct) and [`Sampler::row_params`] the three factors ([`RowParams`], likewise);
//!    [`apply_penalties`] is the CPU reference of the rule the kernel applies.
//! 2. **Greedy** (`temperature <= 0`, [`SamplerConfig::is_greedy`]) is an argmax on the GPU.
//! 3. Otherwise the GPU returns the candidates, and the chain runs on them on the CPU. Two
//!    selection contracts, both exact:
//!    - plain: every token whose penalised logit is `>= max - cutoff`, with
//!      `cutoff = `[`Sampler::candidate_cutoff`], passed to [`Sampler::sample`];
//!    - top-k-aware: every unmasked token `>=` the threshold of [`Sampler::candidate_rule`]
//!      (which also stops at the k-th largest logit), passed with that threshold to
//!      [`Sampler::sample_above`]. With top-k on (the default) this returns at most `top_k`
//!      tokens plus ties however flat the distribution, and never needs the fallback.
//!
//!    [`select_candidates`] is the CPU reference of both. If more tokens than the GPU buffer
//!    holds are selected, or sampling answers [`SamplingError::CandidatesInsufficient`] (see
//!    below), the engine reads back the whole vector and calls [`Sampler::sample_logits`].
//!    For the same state and seed, all of these give the very same token.
//!
//! # The chain (llama.cpp's default order)
//!
//! penalties → top-k → top-p → min-p → temperature → draw, as in llama.cpp's
//! `common_params_sampling::samplers` default (penalties, DRY, top-n-σ, top-k, typical-p,
//! top-p, min-p, XTC, temperature, then `dist`; the stages Wisp does not offer are off there by
//! default). Semantics, all on the penalised logits *before* temperature, as in llama.cpp:
//! - top-k keeps the `k` largest logits (`0` = off);
//! - top-p keeps the shortest prefix of the sorted distribution (softmax at temperature 1 over
//!   the top-k survivors) whose cumulative probability is `>= p` (at least one token);
//! - min-p keeps tokens with `p >= min_p · p_max`, i.e. `logit - max >= ln(min_p)`;
//! - temperature divides the logits, and the token is drawn from their softmax.
//!
//! # The candidate cutoff and why it is exact
//!
//! The final distribution only involves tokens close to the max logit `m`:
//! - with `min_p > 0`, min-p removes every token with `logit - m < ln(min_p)`;
//! - after temperature `T`, a token with gap `g = m - logit` has weight `exp(-g/T)` relative
//!   to the best token; for `g > 30·T` that is `< e^-30 ≈ 9.4e-14` each, so even a 256k-token
//!   vocabulary adds `< 2.4e-8` of probability mass in all, far below what the `f32` logits
//!   themselves resolve.
//!
//! So the cutoff is `min(-ln(min_p) + 1e-3, 30·T)` (the `1e-3` absorbs `f32` rounding of the
//! GPU's `max - cutoff`; the extra tokens it admits are removed by min-p on the CPU). The
//! chain itself drops tokens beyond `30·T` (a stage llama.cpp does not have, removing less
//! than the bound above), so that a candidate list that stops at the cutoff and the full
//! vocabulary end with the *same* final set and bit-identical probabilities.
//!
//! **One stage is not local: top-p.** Its probabilities are normalised over the whole top-k
//! set, and tokens beyond the cutoff still contribute to that sum even though min-p removes
//! them afterwards. Normalising over the candidates alone overstates the cumulative sums and
//! can cut tokens that llama.cpp keeps (e.g. logits `0, -2.99` plus 38 tokens at `-3.1` with
//! the defaults: llama.cpp keeps both leading tokens, the candidates alone would keep only the
//! first). Rather than widening the cutoff to ~30 logits (which would overflow the GPU buffer
//! on almost every token), sampling *certifies* its top-p cut: the missing mass is at most
//! `(top_k - n) · e^-(max - threshold)` (zero once the candidates hold the whole top-k set;
//! unbounded when top-k is off, since the vocabulary size is not known here), and if the
//! cut — after min-p — is the same at both ends of that range, the result is exact.
//! Otherwise it returns [`SamplingError::CandidatesInsufficient`] without touching the RNG,
//! and the engine takes the full-logits path. If top-p keeps every candidate even with the
//! candidates' own (smallest possible) normaliser, no tail can change the result, which is
//! the common case; the top-k-aware rule hands over the whole top-k set and so never refuses.
//!
//! # Where Wisp differs from llama.cpp, and why
//! - Ties are broken by the lower token id at every stage (llama.cpp's order among equal
//!   logits is unspecified), so results are reproducible across platforms.
//! - Probabilities and cumulative sums are computed in `f64` (llama.cpp: `f32`); results can
//!   differ only when a top-p sum lands within rounding of `p`.
//! - The RNG is ChaCha20 seeded with [`SamplerConfig::seed`] (llama.cpp: `mt19937`), so the
//!   same seed gives different tokens than llama.cpp, but always the same tokens in Wisp, on
//!   every target including wasm32. Every non-greedy sample consumes exactly one `u64` draw,
//!   whatever the shape of the distribution, so a sequence never drifts out of step.
//! - Negative temperature is rejected by [`SamplerConfig::validate`] (llama.cpp treats it as
//!   greedy); `penalty_last_n` is a `usize` (llama.cpp's `-1` = "whole context" is expressed by
//!   passing the context length).
//! - Tokens whose weight after temperature is below `e^-30` of the best token's are never
//!   drawn (see above).
//! - NaN logits are treated as masked (never sampled), like `-inf`, because that is what the
//!   GPU's `>=` comparison does with them; a `+inf` logit is an error
//!   ([`SamplingError::InvalidLogit`]) because it leaves no distribution to sample from.

mod chain;
mod config;
mod logprobs;
mod penalties;
mod sampler;
mod stop;

pub use chain::{CandidateRule, select_candidates};
pub use config::SamplerConfig;
pub use logprobs::{MAX_TOP_LOGPROBS, RowLogprobs, TokenLogprobs};
pub use penalties::{PenaltyEntry, RowParams, apply_penalties};
pub use sampler::Sampler;
pub use stop::{StopMatcher, StopOutcome};

/// Errors of the sampling module; wrapped by [`crate::Error::Sampling`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A [`SamplerConfig`] field is out of its range.
    #[error("invalid sampling parameter `{name}` = {value}: expected {expected}")]
    InvalidParameter {
        /// The field's name, as in [`SamplerConfig`] (and its serde form).
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// Nothing to sample from: the candidate list was empty or every logit was masked
    /// (`-inf` or NaN).
    #[error("no candidate tokens to sample from (empty list or every logit masked)")]
    NoCandidates,
    /// A logit of `+inf`: softmax is undefined.
    #[error("logit of token {token} is {logit}, which leaves no distribution to sample from")]
    InvalidLogit {
        /// The token whose logit is invalid.
        token: u32,
        /// Its logit.
        logit: f32,
    },
    /// The candidates within [`Sampler::candidate_cutoff`] do not determine the top-p cut
    /// (the mass beyond the cutoff could move it). Not a failure: read back the full logits
    /// and call [`Sampler::sample_logits`]. The RNG was not advanced.
    #[error(
        "the candidates within the cutoff do not determine the top-p cut; sample from the full logits"
    )]
    CandidatesInsufficient,
}
