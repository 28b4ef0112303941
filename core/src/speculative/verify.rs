//! The target's verdict on drafted tokens: speculative sampling's accept/reject rule over
//! the final distributions of the sampler chain.
//!
//! For drafted tokens x₁…x_k with draft distributions q₁…q_k and the target's p₀…p_k
//! (p_i: the target's distribution after x₁…x_i), each x_{i+1} is kept with probability
//! min(1, p_i(x)/q_i(x)). At the first rejection the target draws from the residual
//! norm(max(0, p_i − q_i)) and the step ends; if all are kept it draws a bonus token from
//! p_k. Each token then has exactly the target's distribution (Leviathan et al. 2023,
//! Chen et al. 2023). A drafter without a distribution (prompt lookup) counts as a point
//! mass: x is kept with probability p(x), and the residual is p without x. With greedy
//! sampling p is a point mass too, so a draft is kept exactly when it is the argmax and
//! no random number is drawn.

use crate::sampling::{Sampler, SamplingError};

use super::ResampleRule;

/// A final distribution of the sampler chain: (token, probability), summing to 1.
pub type Distribution = Vec<(u32, f64)>;

/// The outcome of verifying one sequence's drafts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// How many drafted tokens were kept, from the first.
    pub accepted: usize,
    /// The target's own token after them: the residual's draw at the first rejection, or
    /// the bonus token when every draft was kept.
    pub next: u32,
}

fn probability(dist: &[(u32, f64)], token: u32) -> f64 {
    dist.iter()
        .find(|&&(t, _)| t == token)
        .map_or(0.0, |&(_, p)| p)
}

/// Verifies `drafts` against the target's distributions `target` (one per drafted token,
/// plus one for the bonus token), with the draft's own distributions `proposal` (`None`:
/// point masses), drawing random numbers from `sampler`'s generator. Does not
/// [`Sampler::accept`] the tokens.
pub fn verify(
    target: &[Distribution],
    drafts: &[u32],
    proposal: Option<&[Distribution]>,
    sampler: &mut Sampler,
    rule: ResampleRule,
) -> Result<Verdict, SamplingError> {
    assert_eq!(
        target.len(),
        drafts.len() + 1,
        "one target row per draft, plus one"
    );
    for (i, &x) in drafts.iter().enumerate() {
        let p = probability(&target[i], x);
        let q = proposal.map_or(1.0, |q| probability(&q[i], x));
        // Draw only when the outcome is uncertain, so that greedy verification never
        // touches the generator.
        let keep = if p >= q {
            true
        } else if p <= 0.0 {
            false
        } else {
            sampler.uniform() < p / q
        };
        if keep {
            continue;
        }
        let next = match rule {
            ResampleRule::Residual => {
                let residual = residual(&target[i], x, proposal.map(|q| &q[i][..]));
                if residual.is_empty() {
                    // p ≤ q everywhere but at x, which cannot be when x was rejected;
                    // only rounding gets here: fall back to p.
                    sampler.draw(&target[i])?
                } else {
                    sampler.draw(&residual)?
                }
            }
            ResampleRule::TargetOnly => sampler.draw(&target[i])?,
        };
        return Ok(Verdict { accepted: i, next });
    }
    let next = sampler.draw(&target[drafts.len()])?;
    Ok(Verdict {
        accepted: drafts.len(),
        next,
    })
}

/// max(0, p − q) over p's support (unnormalised: the draw normalises), without the
/// tokens it leaves at zero. `q = None` is a point mass on `drafted`.
fn residual(p: &[(u32, f64)], drafted: u32, q: Option<&[(u32, f64)]>) -> Distribution {
    p.iter()
        .map(|&(t, pt)| {
            let qt = match q {
                Some(q) => probability(q, t),
                None => f64::from(u8::from(t == drafted)),
            };
            (t, (pt - qt).max(0.0))
        })
        .filter(|&(_, w)| w > 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplerConfig;

    fn sampler(seed: u64) -> Sampler {
        Sampler::new(SamplerConfig {
            temperature: 1.0,
            seed,
            ..SamplerConfig::default()
        })
        .unwrap()
    }

    fn greedy() -> Sampler {
        Sampler::new(SamplerConfig::greedy()).unwrap()
    }

    #[test]
    fn greedy_keeps_drafts_while_they_are_the_argmax() {
        let point = |t: u32| vec![(t, 1.0)];
        let target = [point(4), point(7), point(2)];
        let mut s = greedy();
        let v = verify(&target, &[4, 7], None, &mut s, ResampleRule::Residual).unwrap();
        assert_eq!(
            v,
            Verdict {
                accepted: 2,
                next: 2
            }
        );
        let v = verify(&target, &[4, 9], None, &mut s, ResampleRule::Residual).unwrap();
        assert_eq!(
            v,
            Verdict {
                accepted: 1,
                next: 7
            }
        );
        let v = verify(&target, &[5, 7], None, &mut s, ResampleRule::Residual).unwrap();
        assert_eq!(
            v,
            Verdict {
                accepted: 0,
                next: 4
            }
        );
    }

    /// The token the rule emits at the first drafted position, over many draws, has the
    /// target's distribution, for a point-mass and for a distributed draft; skipping the
    /// residual does not.
    #[test]
    fn first_token_has_the_target_distribution() {
        let p = vec![(0, 0.5), (1, 0.3), (2, 0.15), (3, 0.05)];
        let q = vec![(1, 0.6), (3, 0.3), (2, 0.1)];
        let draws = 200_000;
        let check = |proposal: Option<&Distribution>, rule: ResampleRule| {
            let mut s = sampler(11);
            let mut draft_rng = sampler(12);
            let mut counts = [0u64; 4];
            for _ in 0..draws {
                let x = match proposal {
                    Some(q) => draft_rng.draw(q).unwrap(),
                    None => 1,
                };
                let qs = proposal.map(|q| vec![q.clone()]);
                let target = [p.clone(), p.clone()];
                let v = verify(&target, &[x], qs.as_deref(), &mut s, rule).unwrap();
                let first = if v.accepted == 1 { x } else { v.next };
                counts[first as usize] += 1;
            }
            // Largest deviation in standard errors.
            p.iter()
                .map(|&(t, pt)| {
                    let sd = (pt * (1.0 - pt) / draws as f64).sqrt();
                    (counts[t as usize] as f64 / draws as f64 - pt).abs() / sd
                })
                .fold(0.0, f64::max)
        };
        assert!(check(None, ResampleRule::Residual) < 4.5);
        assert!(check(Some(&q), ResampleRule::Residual) < 4.5);
        assert!(check(None, ResampleRule::TargetOnly) > 20.0);
        assert!(check(Some(&q), ResampleRule::TargetOnly) > 20.0);
    }

    #[test]
    fn a_rejected_point_mass_is_never_drawn_again() {
        let p = vec![(0, 0.9), (1, 0.1)];
        let mut s = sampler(3);
        for _ in 0..1000 {
            let v = verify(
                &[p.clone(), p.clone()],
                &[0],
                None,
                &mut s,
                ResampleRule::Residual,
            )
            .unwrap();
            if v.accepted == 0 {
                assert_eq!(v.next, 1);
            }
        }
    }
}
