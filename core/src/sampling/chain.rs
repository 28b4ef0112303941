//! The truncation chain (top-k → top-p → min-p → negligible-weight cut → temperature) on a
//! candidate list, and the CPU reference of the GPU's candidate selection.

use std::cmp::Ordering;

use super::{SamplerConfig, SamplingError};

/// A token whose weight relative to the best one is below `e^-TAIL_LOG_WEIGHT` is negligible
/// (`e^-30 ≈ 9.4e-14`; a whole 256k vocabulary of such tokens adds `< 2.4e-8` of mass).
pub(crate) const TAIL_LOG_WEIGHT: f64 = 30.0;

/// Added to `-ln(min_p)` in the cutoff so that `f32` rounding of the GPU's `max - cutoff`
/// can never drop a token min-p would keep; min-p removes the few extra tokens it admits.
pub(crate) const MIN_P_MARGIN: f64 = 1e-3;

/// Logit gap beyond which a token's weight after temperature is negligible: `30 · T` (`+inf`
/// for huge temperatures, `0` for greedy).
pub(crate) fn negligible_gap(config: &SamplerConfig) -> f32 {
    if config.is_greedy() {
        return 0.0;
    }
    (TAIL_LOG_WEIGHT * f64::from(config.temperature)) as f32
}

/// `min(-ln(min_p) + margin, 30 · T)`; `0` for greedy. Never larger than [`negligible_gap`]
/// (both round the same `f64` bound to `f32`, and rounding is monotonic).
pub(crate) fn cutoff(config: &SamplerConfig) -> f32 {
    if config.is_greedy() {
        return 0.0;
    }
    let mut gap = TAIL_LOG_WEIGHT * f64::from(config.temperature);
    if config.min_p > 0.0 {
        gap = gap.min(-f64::from(config.min_p).ln() + MIN_P_MARGIN);
    }
    gap as f32
}

/// Which tokens the GPU returns for [`Sampler::sample_above`](super::Sampler::sample_above):
/// every unmasked token whose logit is `>= threshold(max, kth_largest)`.
///
/// Everything after top-k only looks at the top-k set, so with top-k on the selection can
/// stop at the k-th largest logit: at most `top_k` candidates (plus ties) however flat the
/// distribution, and — when top-p needs the top-k set's whole softmax mass — never a refusal.
/// A GPU that does not compute the k-th largest logit may use [`CandidateRule::within`] (just
/// the cutoff): still exact, at the price of more fallbacks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateRule {
    /// Every token within this logit gap below the max is needed (unless top-k removes it).
    pub cutoff: f32,
    /// The config's top-k (`0` = off, and then the cutoff alone decides).
    pub top_k: usize,
    /// Top-p is on: it normalises over the whole top-k set, so all of it is returned, not
    /// only its part within the cutoff.
    pub whole_top_k: bool,
}

impl CandidateRule {
    /// The plain rule: every token within `cutoff` of the max.
    pub fn within(cutoff: f32) -> Self {
        Self {
            cutoff,
            top_k: 0,
            whole_top_k: false,
        }
    }

    /// The selection threshold. `max` is the largest logit; `kth_largest` the `top_k`-th
    /// largest unmasked logit (counting ties separately), `None` when top-k is off or fewer
    /// than `top_k` tokens are unmasked (then every unmasked token is a candidate).
    /// In WGSL terms: `t = max - cutoff`; with top-k, `t = kth` (whole top-k) or
    /// `t = max(kth, max - cutoff)`, and `t = -inf` when there is no k-th logit.
    pub fn threshold(&self, max: f32, kth_largest: Option<f32>) -> f32 {
        // `inf - inf` would be NaN and select nothing; select the `+inf` tokens instead so
        // sampling reports them.
        let within = if max == f32::INFINITY {
            max
        } else {
            max - self.cutoff
        };
        if self.top_k == 0 {
            return within;
        }
        match kth_largest {
            None => f32::NEG_INFINITY,
            Some(kth) if self.whole_top_k => kth,
            Some(kth) => kth.max(within),
        }
    }
}

/// The CPU reference of the GPU candidate selection under `rule`: the unmasked tokens whose
/// logit is `>=` the rule's threshold, as `(token, logit)` in token order, and that threshold
/// (pass both to [`Sampler::sample_above`](super::Sampler::sample_above)).
///
/// NaN and `-inf` logits are masked: never selected, and ignored by the max and the k-th
/// largest. Returns no candidates when every logit is masked.
pub fn select_candidates(logits: &[f32], rule: &CandidateRule) -> (Vec<(u32, f32)>, f32) {
    // `f32::max` returns the other operand when one is NaN, so NaNs drop out of the fold.
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return (Vec::new(), f32::NEG_INFINITY);
    }
    let kth = if rule.top_k == 0 {
        None
    } else {
        let mut unmasked: Vec<f32> = logits.iter().copied().filter(|&l| !is_masked(l)).collect();
        if unmasked.len() < rule.top_k {
            None
        } else {
            let (_, kth, _) = unmasked.select_nth_unstable_by(rule.top_k - 1, |a, b| {
                b.partial_cmp(a).unwrap_or(Ordering::Equal)
            });
            Some(*kth)
        }
    };
    let threshold = rule.threshold(max, kth);
    // Zipping with `0u32..` (rather than casting the index) keeps ids exact by construction.
    let candidates = logits
        .iter()
        .zip(0u32..)
        .filter(|&(&logit, _)| !is_masked(logit) && logit >= threshold)
        .map(|(&logit, token)| (token, logit))
        .collect();
    (candidates, threshold)
}

/// Every unmasked token of a full logits vector, reduced to the top-k set when top-k is on
/// (linear-time selection: this runs on the whole vocabulary in the fallback path).
pub(crate) fn all_candidates(logits: &[f32], top_k: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = logits
        .iter()
        .zip(0u32..)
        .filter(|&(&logit, _)| !is_masked(logit))
        .map(|(&logit, token)| (token, logit))
        .collect();
    if top_k > 0 && all.len() > top_k {
        all.select_nth_unstable_by(top_k - 1, by_logit_desc);
        all.truncate(top_k);
    }
    all
}

/// What a candidate list is known to contain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Coverage {
    /// Every unmasked token, or at least the whole top-k set.
    Full,
    /// Every unmasked token with logit `>= max - cutoff` (and possibly more, as an upper set).
    Cutoff,
    /// Exactly the unmasked tokens with logit `>=` this threshold.
    Above(f32),
}

fn is_masked(logit: f32) -> bool {
    logit.is_nan() || logit == f32::NEG_INFINITY
}

/// Sort order of every stage: larger logit first, lower token id first among equal logits.
/// A total order once NaNs are gone (`-0.0` and `0.0` compare equal, as they should).
pub(crate) fn by_logit_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// Smallest number of leading tokens whose cumulative probability (`weights / z`) is `>= p`;
/// all of them if the sum never reaches `p`. At least one, since the first weight is > 0.
fn top_p_cut(weights: &[f64], z: f64, p: f64) -> usize {
    let mut cumulative = 0.0;
    for (i, w) in weights.iter().enumerate() {
        cumulative += w;
        if cumulative / z >= p {
            return i + 1;
        }
    }
    weights.len()
}

/// Runs the chain on `candidates` (reordered and truncated in place) and returns the final
/// distribution: `(token, probability)` sorted by decreasing probability (lower id first among
/// ties), probabilities summing to 1, never empty.
///
/// The result depends only on the logits, not on which valid candidate set was passed: every
/// path gives bit-identical distributions, or [`SamplingError::CandidatesInsufficient`] when
/// the candidates cannot decide it (the tail beyond them could move the top-p cut, or an
/// `Above` threshold left out tokens within the cutoff).
pub(crate) fn distribution(
    candidates: &mut Vec<(u32, f32)>,
    config: &SamplerConfig,
    coverage: Coverage,
) -> Result<Vec<(u32, f64)>, SamplingError> {
    candidates.retain(|&(_, logit)| !is_masked(logit));
    if let Some(&(token, logit)) = candidates.iter().find(|c| c.1 == f32::INFINITY) {
        return Err(SamplingError::InvalidLogit { token, logit });
    }
    // Unstable sort is deterministic here: the order is total (ties broken by id).
    candidates.sort_unstable_by(by_logit_desc);
    let Some(&(best_token, best_logit)) = candidates.first() else {
        return Err(SamplingError::NoCandidates);
    };
    if config.is_greedy() {
        candidates.truncate(1);
        return Ok(vec![(best_token, 1.0)]);
    }
    let missing_mass = missing_top_k_mass(candidates.len(), best_logit, config, coverage)?;
    if config.top_k > 0 {
        candidates.truncate(config.top_k);
    }
    let later_keep = min_p_and_negligible_keep(candidates, best_logit, config);
    let mut keep = later_keep;
    if config.top_p < 1.0 {
        keep = keep.min(top_p_keep(
            candidates,
            best_logit,
            config.top_p,
            missing_mass,
            later_keep,
        )?);
    }
    candidates.truncate(keep);
    Ok(softmax_at_temperature(
        candidates,
        best_logit,
        config.temperature,
    ))
}

/// An upper bound on the softmax weight (at temperature 1, relative to the best token) of
/// the top-k set's tokens missing from `n` sorted candidates of the given coverage; `0` when
/// none can be missing.
///
/// An upper set of the logit order holds the whole top-k set exactly when it has at least
/// k tokens. Otherwise, the unmasked tokens it lacks all lie below the threshold, each
/// weighing < e^-(max - threshold) at temperature 1; the top-k set lacks at most k - n of
/// them (without top-k: any number, since the vocabulary size is not known here).
fn missing_top_k_mass(
    n: usize,
    best_logit: f32,
    config: &SamplerConfig,
    coverage: Coverage,
) -> Result<f64, SamplingError> {
    let top_k = config.top_k;
    let cutoff = cutoff(config);
    let threshold = match coverage {
        Coverage::Full => f32::NEG_INFINITY,
        Coverage::Cutoff => best_logit - cutoff,
        Coverage::Above(t) => t,
    };
    let covers_top_k = threshold == f32::NEG_INFINITY || (top_k > 0 && n >= top_k);
    if covers_top_k {
        return Ok(0.0);
    }
    // A threshold above `max - cutoff` may have left out tokens the later stages keep;
    // so may a NaN one. Neither can be repaired from here.
    if threshold.is_nan() || threshold > best_logit - cutoff {
        return Err(SamplingError::CandidatesInsufficient);
    }
    Ok(if top_k > 0 {
        (top_k - n) as f64 * (f64::from(threshold) - f64::from(best_logit)).exp()
    } else {
        f64::INFINITY
    })
}

/// How many leading candidates (sorted, after top-k) both min-p and the negligible-weight
/// cut keep.
fn min_p_and_negligible_keep(
    candidates: &[(u32, f32)],
    best_logit: f32,
    config: &SamplerConfig,
) -> usize {
    let max = f64::from(best_logit);
    // min-p keeps a prefix of the sorted list: logit - max >= ln(min_p), i.e. p >= min_p·p_max.
    let min_p_keep = if config.min_p > 0.0 {
        let log_min_p = f64::from(config.min_p).ln();
        candidates.partition_point(|&(_, logit)| f64::from(logit) - max >= log_min_p)
    } else {
        candidates.len()
    };
    // Tokens beyond 30·T weigh < e^-30 after temperature; they are dropped explicitly (not
    // left to the draw) so that every candidate set — the GPU's, which stops at the cutoff,
    // and the full vocabulary — ends with the very same final set. Same f32 expression as the
    // selection's `max - cutoff`, so the two agree to the bit.
    let negligible_from = best_logit - negligible_gap(config);
    let negligible_keep = candidates.partition_point(|&(_, logit)| logit >= negligible_from);
    // Both prefixes lie within any valid candidate set (see `cutoff`).
    min_p_keep.min(negligible_keep)
}

/// How many leading candidates (sorted, after top-k) top-p keeps, or
/// [`SamplingError::CandidatesInsufficient`] when up to `missing_mass` of absent tokens could
/// change what is kept in the end (the intersection with the later stages' `later_keep`).
fn top_p_keep(
    candidates: &[(u32, f32)],
    best_logit: f32,
    top_p: f32,
    missing_mass: f64,
    later_keep: usize,
) -> Result<usize, SamplingError> {
    let max = f64::from(best_logit);
    // Softmax at temperature 1 over the top-k survivors, as in llama.cpp (temperature
    // comes last in the chain).
    let weights: Vec<f64> = candidates
        .iter()
        .map(|&(_, logit)| (f64::from(logit) - max).exp())
        .collect();
    let z: f64 = weights.iter().sum();
    let p = f64::from(top_p);
    let cut = top_p_cut(&weights, z, p);
    if missing_mass > 0.0 {
        // The cut only grows with the normaliser, so checking both ends of the possible
        // range [z, z + missing_mass] decides whether the tail can matter. What is kept
        // in the end is the intersection with the later stages' prefix, so compare after it.
        let cut_at_most = if missing_mass.is_finite() {
            top_p_cut(&weights, z + missing_mass, p)
        } else {
            weights.len()
        };
        if cut.min(later_keep) != cut_at_most.min(later_keep) {
            return Err(SamplingError::CandidatesInsufficient);
        }
    }
    Ok(cut)
}

/// Temperature, then softmax: `(token, probability)` in the candidates' order.
fn softmax_at_temperature(
    candidates: &[(u32, f32)],
    best_logit: f32,
    temperature: f32,
) -> Vec<(u32, f64)> {
    let max = f64::from(best_logit);
    // `validate` guarantees temperature > 0 and finite here.
    let temperature = f64::from(temperature);
    let mut probabilities: Vec<(u32, f64)> = candidates
        .iter()
        .map(|&(token, logit)| (token, ((f64::from(logit) - max) / temperature).exp()))
        .collect();
    // >= 1: the best token contributes exp(0).
    let total: f64 = probabilities.iter().map(|&(_, w)| w).sum();
    for entry in &mut probabilities {
        entry.1 /= total;
    }
    probabilities
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(top_k: usize, top_p: f32, min_p: f32, temperature: f32) -> SamplerConfig {
        SamplerConfig {
            top_k,
            top_p,
            min_p,
            temperature,
            ..SamplerConfig::default()
        }
    }

    fn full(logits: &[f32], c: &SamplerConfig) -> Vec<(u32, f64)> {
        let mut cands = all_candidates(logits, c.top_k);
        distribution(&mut cands, c, Coverage::Full).unwrap()
    }

    fn tokens(dist: &[(u32, f64)]) -> Vec<u32> {
        dist.iter().map(|d| d.0).collect()
    }

    fn softmax(logits: &[f64]) -> Vec<f64> {
        let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
        let z: f64 = w.iter().sum();
        w.iter().map(|x| x / z).collect()
    }

    #[test]
    fn select_candidates_matches_definition() {
        let logits = [1.0, f32::NAN, 3.0, 2.5, f32::NEG_INFINITY, 0.5];
        let within = |c| select_candidates(&logits, &CandidateRule::within(c));
        assert_eq!(within(0.5), (vec![(2, 3.0), (3, 2.5)], 2.5));
        assert_eq!(within(0.0), (vec![(2, 3.0)], 3.0));
        assert_eq!(
            within(f32::INFINITY).0,
            vec![(0, 1.0), (2, 3.0), (3, 2.5), (5, 0.5)]
        );
        let masked = select_candidates(&[f32::NEG_INFINITY, f32::NAN], &CandidateRule::within(1.0));
        assert!(masked.0.is_empty());
        assert!(
            select_candidates(&[], &CandidateRule::within(1.0))
                .0
                .is_empty()
        );
        let inf = select_candidates(&[0.0, f32::INFINITY], &CandidateRule::within(1.0));
        assert_eq!(inf.0, vec![(1, f32::INFINITY)]);

        // With top-k: the whole top-k set (ties at the k-th logit included) ...
        let logits = [5.0, 1.0, 4.0, 1.0, 0.0, 4.5];
        let rule = CandidateRule {
            cutoff: 0.7,
            top_k: 4,
            whole_top_k: true,
        };
        assert_eq!(
            select_candidates(&logits, &rule),
            (vec![(0, 5.0), (1, 1.0), (2, 4.0), (3, 1.0), (5, 4.5)], 1.0)
        );
        // ... or only its part within the cutoff when top-p is off ...
        let rule = CandidateRule {
            whole_top_k: false,
            ..rule
        };
        assert_eq!(
            select_candidates(&logits, &rule),
            (vec![(0, 5.0), (5, 4.5)], 5.0f32 - 0.7)
        );
        // ... or the k largest when they are all within the cutoff.
        let rule = CandidateRule {
            cutoff: 10.0,
            top_k: 2,
            whole_top_k: false,
        };
        assert_eq!(
            select_candidates(&logits, &rule),
            (vec![(0, 5.0), (5, 4.5)], 4.5)
        );
        // Fewer unmasked tokens than k: all of them, threshold -inf.
        let rule = CandidateRule {
            cutoff: 0.1,
            top_k: 3,
            whole_top_k: true,
        };
        let few = [f32::NEG_INFINITY, 2.0, f32::NAN, -7.0];
        assert_eq!(
            select_candidates(&few, &rule),
            (vec![(1, 2.0), (3, -7.0)], f32::NEG_INFINITY)
        );
    }

    #[test]
    fn top_k_keeps_k_largest_with_id_tie_break() {
        let logits = [1.0, 2.0, 2.0, 2.0, 0.0, 3.0];
        let c = config(3, 1.0, 0.0, 1.0);
        // 3.0 (id 5), then the tied 2.0s by id: 1, 2.
        assert_eq!(tokens(&full(&logits, &c)), vec![5, 1, 2]);
        // Probabilities renormalised over the survivors.
        let d = full(&logits, &c);
        let expect = softmax(&[3.0, 2.0, 2.0]);
        for (got, want) in d.iter().zip(&expect) {
            assert!((got.1 - want).abs() < 1e-12);
        }
        // k = 0 is off; k larger than the vocabulary keeps everything.
        assert_eq!(full(&logits, &config(0, 1.0, 0.0, 1.0)).len(), 6);
        assert_eq!(full(&logits, &config(100, 1.0, 0.0, 1.0)).len(), 6);
    }

    #[test]
    fn top_p_boundaries() {
        // Four equal logits: each 0.25. Cumulative 0.25, 0.5, 0.75, 1.0.
        let flat = [0.0f32; 4];
        // Exactly reaching p keeps the token that reaches it ("≥ p"), ties by lower id.
        assert_eq!(tokens(&full(&flat, &config(0, 0.5, 0.0, 1.0))), vec![0, 1]);
        assert_eq!(
            tokens(&full(&flat, &config(0, 0.75, 0.0, 1.0))),
            vec![0, 1, 2]
        );
        // Just above a boundary needs one more token.
        assert_eq!(
            tokens(&full(&flat, &config(0, 0.5001, 0.0, 1.0))),
            vec![0, 1, 2]
        );
        // Tiny p still keeps one token (min_keep = 1).
        assert_eq!(tokens(&full(&flat, &config(0, 1e-6, 0.0, 1.0))), vec![0]);
        // p = 1 is off.
        assert_eq!(full(&flat, &config(0, 1.0, 0.0, 1.0)).len(), 4);

        // ln-probabilities: token 2: 0.5, token 0: 0.3, token 1: 0.2.
        let logits = [0.3f32.ln(), 0.2f32.ln(), 0.5f32.ln()];
        assert_eq!(tokens(&full(&logits, &config(0, 0.5, 0.0, 1.0))), vec![2]);
        assert_eq!(
            tokens(&full(&logits, &config(0, 0.6, 0.0, 1.0))),
            vec![2, 0]
        );
        assert_eq!(
            tokens(&full(&logits, &config(0, 0.81, 0.0, 1.0))),
            vec![2, 0, 1]
        );
        // top-p sees the top-k survivors only: with k = 2 the mass is 0.5/0.8 = 0.625 and
        // 0.3/0.8 = 0.375, so p = 0.6 keeps just token 2 and p = 0.63 keeps both.
        assert_eq!(tokens(&full(&logits, &config(2, 0.6, 0.0, 1.0))), vec![2]);
        assert_eq!(
            tokens(&full(&logits, &config(2, 0.63, 0.0, 1.0))),
            vec![2, 0]
        );
        // top-p ignores temperature (it runs before it): same cut at T = 5.
        assert_eq!(
            tokens(&full(&logits, &config(0, 0.6, 0.0, 5.0))),
            vec![2, 0]
        );
    }

    #[test]
    fn min_p_keeps_relative_probability() {
        // Relative to the best (token 0): 1, 0.5, 0.2, 0.1, 0.05.
        let rel = [1.0f32, 0.5, 0.2, 0.1, 0.05];
        let logits: Vec<f32> = rel.iter().map(|r| r.ln()).collect();
        assert_eq!(
            tokens(&full(&logits, &config(0, 1.0, 0.15, 1.0))),
            vec![0, 1, 2]
        );
        assert_eq!(
            tokens(&full(&logits, &config(0, 1.0, 0.3, 1.0))),
            vec![0, 1]
        );
        assert_eq!(tokens(&full(&logits, &config(0, 1.0, 0.6, 1.0))), vec![0]);
        assert_eq!(tokens(&full(&logits, &config(0, 1.0, 0.01, 1.0))).len(), 5);
        // min_p = 1 keeps exactly the tokens tied with the max.
        assert_eq!(
            tokens(&full(&[2.0, 1.0, 2.0], &config(0, 1.0, 1.0, 1.0))),
            vec![0, 2]
        );
        // min-p ignores temperature too.
        assert_eq!(
            tokens(&full(&logits, &config(0, 1.0, 0.15, 0.1))),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn temperature_scales_and_approaches_argmax() {
        let logits = [1.0f32, 1.5, 1.4, -2.0];
        let d = full(&logits, &config(0, 1.0, 0.0, 0.5));
        let expect = softmax(&[1.5 / 0.5, 1.4 / 0.5, 1.0 / 0.5, -2.0 / 0.5]);
        assert_eq!(tokens(&d), vec![1, 2, 0, 3]);
        for (got, want) in d.iter().zip(&expect) {
            assert!((got.1 - want).abs() < 1e-6, "{got:?} vs {want}");
        }
        // As T → 0+, the argmax takes all the mass.
        let mut previous = 0.0;
        for t in [1.0f32, 0.3, 0.1, 0.03, 0.01, 0.001] {
            let p_best = full(&logits, &config(0, 1.0, 0.0, t))[0].1;
            assert!(p_best > previous, "T = {t}: {p_best} <= {previous}");
            previous = p_best;
        }
        assert!(previous > 1.0 - 1e-12);
        assert_eq!(full(&logits, &config(0, 1.0, 0.0, 1e-30))[0], (1, 1.0));
    }

    #[test]
    fn masked_and_invalid_logits() {
        let c = config(0, 1.0, 0.0, 1.0);
        let mut empty = vec![];
        assert_eq!(
            distribution(&mut empty, &c, Coverage::Full),
            Err(SamplingError::NoCandidates)
        );
        let mut masked = vec![(0, f32::NEG_INFINITY), (1, f32::NAN)];
        assert_eq!(
            distribution(&mut masked, &c, Coverage::Full),
            Err(SamplingError::NoCandidates)
        );
        let mut inf = vec![(0, 1.0), (4, f32::INFINITY)];
        assert_eq!(
            distribution(&mut inf, &c, Coverage::Full),
            Err(SamplingError::InvalidLogit {
                token: 4,
                logit: f32::INFINITY
            })
        );
        let mut some_masked = vec![(0, f32::NEG_INFINITY), (1, f32::NAN), (2, -5.0)];
        assert_eq!(
            distribution(&mut some_masked, &c, Coverage::Full).unwrap(),
            vec![(2, 1.0)]
        );
    }

    /// The counterexample from the module docs: normalising top-p over the candidates alone
    /// would drop token 1, which llama.cpp keeps with ~5 % probability. The chain must refuse
    /// rather than answer wrongly, and the full path must keep token 1.
    #[test]
    fn top_p_tail_mass_is_certified_not_ignored() {
        let c = SamplerConfig::default(); // top_k 40, top_p 0.95, min_p 0.05
        let mut logits = vec![0.0f32, -2.99];
        logits.extend(std::iter::repeat_n(-3.1, 38));
        logits.extend(std::iter::repeat_n(-20.0, 1000));
        let cut = cutoff(&c);
        assert!((f64::from(cut) - (-(0.05f64.ln()) + MIN_P_MARGIN)).abs() < 1e-6);
        let (mut cands, threshold) = select_candidates(&logits, &CandidateRule::within(cut));
        assert_eq!(cands.len(), 2);
        assert_eq!(
            distribution(&mut cands.clone(), &c, Coverage::Cutoff),
            Err(SamplingError::CandidatesInsufficient)
        );
        assert_eq!(
            distribution(&mut cands, &c, Coverage::Above(threshold)),
            Err(SamplingError::CandidatesInsufficient)
        );
        assert_eq!(tokens(&full(&logits, &c)), vec![0, 1]);
        // The top-k-aware rule hands over the whole top-k set and gets the exact answer.
        let rule = CandidateRule {
            cutoff: cut,
            top_k: 40,
            whole_top_k: true,
        };
        let (mut cands, threshold) = select_candidates(&logits, &rule);
        assert_eq!(cands.len(), 40);
        assert_eq!(
            distribution(&mut cands, &c, Coverage::Above(threshold)),
            Ok(full(&logits, &c))
        );

        // Without the tail, the same two candidates are the whole story: only token 0.
        assert_eq!(tokens(&full(&logits[..2], &c)), vec![0]);

        // When top-p keeps every candidate even with their own normaliser, nothing beyond the
        // cutoff can change the result, so the candidates suffice.
        let mut flat = vec![0.0f32, -1.0, -2.0];
        flat.extend(std::iter::repeat_n(-3.1, 38));
        let (mut cands, _) = select_candidates(&flat, &CandidateRule::within(cut));
        assert_eq!(
            tokens(&distribution(&mut cands, &c, Coverage::Cutoff).unwrap()),
            vec![0, 1, 2]
        );
    }

    /// A threshold above `max - cutoff` (a GPU that selected too few tokens) is refused
    /// unless the candidates hold the whole top-k set; a NaN threshold is refused.
    #[test]
    fn thresholds_that_miss_needed_tokens_are_refused() {
        let c = config(0, 1.0, 0.0, 1.0); // cutoff 30
        let mut cands = vec![(0, 0.0), (1, -1.0)];
        assert_eq!(
            distribution(&mut cands.clone(), &c, Coverage::Above(-2.0)),
            Err(SamplingError::CandidatesInsufficient)
        );
        assert_eq!(
            distribution(&mut cands.clone(), &c, Coverage::Above(f32::NAN)),
            Err(SamplingError::CandidatesInsufficient)
        );
        let k2 = config(2, 1.0, 0.0, 1.0);
        assert_eq!(
            tokens(&distribution(&mut cands, &k2, Coverage::Above(-1.0)).unwrap()),
            vec![0, 1]
        );
    }

    /// Tokens beyond 30·T are dropped by the chain itself, so a full vector and the
    /// candidates within the cutoff agree exactly.
    #[test]
    fn negligible_tokens_are_dropped() {
        let c = config(0, 1.0, 0.0, 0.1); // 30·T = 3
        assert_eq!(tokens(&full(&[0.0, -2.9, -3.1, -100.0], &c)), vec![0, 1]);
    }
}
