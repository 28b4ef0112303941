//! Plain CPU references of every kernel, written for clarity, in f64 where it matters.

use wisp_core::model::{ExpertGating, FfnActivation, RopeStyle};

/// y[t, n] = sum_k w[n, k] x[t, k] (w row-major [n, k]).
pub fn matmul(w: &[f32], n: usize, k: usize, x: &[f32], t: usize) -> Vec<f32> {
    let mut y = vec![0.0; t * n];
    for ti in 0..t {
        for ni in 0..n {
            let mut s = 0.0f64;
            for ki in 0..k {
                s += w[ni * k + ki] as f64 * x[ti * k + ki] as f64;
            }
            y[ti * n + ni] = s as f32;
        }
    }
    y
}

pub fn rmsnorm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let n = weight.len();
    x.chunks(n)
        .flat_map(|row| {
            let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter()
                .zip(weight)
                .map(move |(v, w)| (*v as f64 * inv * *w as f64) as f32)
        })
        .collect()
}

/// RoPE of one head in place: pairs (2i, 2i+1) in the interleaved style (llama.cpp's
/// "normal" mode), (i, i + n_rot/2) in the half-split style ("NEOX").
pub fn rope_head(head: &mut [f32], pos: u32, inv_freq: &[f32], n_rot: usize, style: RopeStyle) {
    for (i, f) in inv_freq.iter().enumerate().take(n_rot / 2) {
        let (ia, ib) = match style {
            RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            RopeStyle::HalfSplit => (i, i + n_rot / 2),
        };
        let theta = pos as f64 * *f as f64;
        let (s, c) = theta.sin_cos();
        let (a, b) = (head[ia] as f64, head[ib] as f64);
        head[ia] = (a * c - b * s) as f32;
        head[ib] = (a * s + b * c) as f32;
    }
}

/// Causal attention with grouped-query heads and an optional sliding window.
/// q: [t, n_head, d] (positions pos0..pos0+t); k, v: [positions, n_kv, d].
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    pos0: usize,
    n_head: usize,
    n_kv: usize,
    d: usize,
    window: usize,
) -> Vec<f32> {
    let group = n_head / n_kv;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; t * n_head * d];
    for ti in 0..t {
        let pos = pos0 + ti;
        let start = if window > 0 && pos + 1 > window {
            pos + 1 - window
        } else {
            0
        };
        for h in 0..n_head {
            let kh = h / group;
            let qv = &q[(ti * n_head + h) * d..][..d];
            let scores: Vec<f64> = (start..=pos)
                .map(|j| {
                    let kv = &k[(j * n_kv + kh) * d..][..d];
                    qv.iter()
                        .zip(kv)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for di in 0..d {
                let mut acc = 0.0;
                for (jj, j) in (start..=pos).enumerate() {
                    acc += e[jj] * v[(j * n_kv + kh) * d + di] as f64;
                }
                out[(ti * n_head + h) * d + di] = (acc / sum) as f32;
            }
        }
    }
    out
}

/// The gated feed-forward nonlinearity: gate(g) * u for rows gu = [g | u] of width 2n.
pub fn glu(gu: &[f32], n: usize, gate: FfnActivation) -> Vec<f32> {
    let f = move |g: f64| match gate {
        FfnActivation::Silu => g / (1.0 + (-g).exp()),
        FfnActivation::GeluTanh => {
            0.5 * g
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g.powi(3))).tanh())
        }
    };
    gu.chunks(2 * n)
        .flat_map(|row| (0..n).map(move |i| (f(row[i] as f64) * row[n + i] as f64) as f32))
        .collect()
}

/// Index of the largest value (lowest index among equals).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Mixture-of-experts routing of one token: probabilities from the router's scores, the
/// `n_used` most probable experts (lower index first among equals), their weights
/// optionally renormalised, then scaled.
pub fn route_experts(
    scores: &[f32],
    n_used: usize,
    gating: ExpertGating,
    normalize: bool,
    scale: f32,
) -> Vec<(usize, f64)> {
    let probs: Vec<f64> = match gating {
        ExpertGating::Softmax => {
            let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = scores.iter().map(|s| (*s as f64 - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.iter().map(|x| x / sum).collect()
        }
        ExpertGating::Sigmoid => scores
            .iter()
            .map(|s| 1.0 / (1.0 + (-*s as f64).exp()))
            .collect(),
    };
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order.truncate(n_used);
    let sum: f64 = order.iter().map(|&e| probs[e]).sum();
    order
        .into_iter()
        .map(|e| {
            (
                e,
                if normalize { probs[e] / sum } else { probs[e] } * scale as f64,
            )
        })
        .collect()
}
