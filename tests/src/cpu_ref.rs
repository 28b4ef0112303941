//! Plain CPU references of every kernel, written for clarity, in f64 where it matters.

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
            row.iter().zip(weight).map(move |(v, w)| (*v as f64 * inv * *w as f64) as f32)
        })
        .collect()
}

/// Interleaved-pair RoPE of one head in place (llama.cpp's "normal" mode).
pub fn rope_head(head: &mut [f32], pos: u32, inv_freq: &[f32], n_rot: usize) {
    for (i, f) in inv_freq.iter().enumerate().take(n_rot / 2) {
        let theta = pos as f64 * *f as f64;
        let (s, c) = theta.sin_cos();
        let (a, b) = (head[2 * i] as f64, head[2 * i + 1] as f64);
        head[2 * i] = (a * c - b * s) as f32;
        head[2 * i + 1] = (a * s + b * c) as f32;
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
        let start = if window > 0 && pos + 1 > window { pos + 1 - window } else { 0 };
        for h in 0..n_head {
            let kh = h / group;
            let qv = &q[(ti * n_head + h) * d..][..d];
            let scores: Vec<f64> = (start..=pos)
                .map(|j| {
                    let kv = &k[(j * n_kv + kh) * d..][..d];
                    qv.iter().zip(kv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale
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

pub fn silu_mul(gu: &[f32], n: usize) -> Vec<f32> {
    gu.chunks(2 * n)
        .flat_map(|row| {
            (0..n).map(move |i| {
                let g = row[i] as f64;
                (g / (1.0 + (-g).exp()) * row[n + i] as f64) as f32
            })
        })
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
