//! Q4_K reference quantizer: llama.cpp's `quantize_row_q4_K_ref` (no importance matrix).
//!
//! A 256-element super-block holds 8 sub-blocks of 32. Each sub-block gets a scale and a
//! min from a small weighted least-squares search (`make_qkx2_quants`); the 8 scales and
//! the 8 mins are then themselves quantized to 6 bits against the super-block's f16 `d`
//! and `dmin`, and the 4-bit quants are recomputed with those stored values, so that
//! what the dequantizer reads back is what the quants were rounded against.
//!
//! Arithmetic is plain f32 in ggml's order (no fused multiply-adds), so the output is what
//! a llama.cpp build without FMA contraction writes. gguf-py has no Q4_K quantizer, so
//! there is no fixture; the tests check round-trip bounds and the packing instead.

use half::f16;

/// Elements per super-block.
const QK_K: usize = 256;

/// llama.cpp's `nearest_int`: round half to even through the float mantissa (exact for
/// |x| < 2^22, which every caller guarantees by clamping later).
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// `make_qkx2_quants(32, 15, x, weights, L, &min, Laux, -1, 0.1, 20, false)`: the scale and
/// (negated, non-negative) min that minimise the weighted squared error of `x ≈ scale·L − min`
/// over 21 candidate scales, writing the chosen quants into `l`.
fn scale_min_search(x: &[f32; 32], weights: &[f32; 32], l: &mut [u8; 32]) -> (f32, f32) {
    const NMAX: f32 = 15.0;
    const RMIN: f32 = -1.0;
    const RDELTA: f32 = 0.1;
    const NSTEP: i32 = 20;
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..32 {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    // The min is subtracted, so it must not be positive: a block of positive values still
    // starts at zero.
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let quant =
        |iscale: f32, xi: f32, min: f32| nearest_int(iscale * (xi - min)).clamp(0, 15) as u8;
    let mut iscale = NMAX / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..32 {
        l[i] = quant(iscale, x[i], min);
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut laux = [0u8; 32];
    for step in 0..=NSTEP {
        iscale = (RMIN + RDELTA * step as f32 + NMAX) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..32 {
            laux[i] = quant(iscale, x[i], min);
            let (w, li) = (weights[i], laux[i] as f32);
            sum_l += w * li;
            sum_l2 += w * li * li;
            sum_xl += w * li * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut error = 0.0f32;
            for i in 0..32 {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if error < best_error {
                *l = laux;
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs the 6-bit scales `ls` and mins `lm` of the 8 sub-blocks into 12 bytes (the layout
/// `k_scale_min` in `dequant.rs` reads).
fn pack_scales(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// Encodes one 256-element super-block (144 bytes: d, dmin, scales[12], qs[128]).
pub(super) fn q4_k(x: &[f32; QK_K], out: &mut Vec<u8>) {
    let mut quants = [[0u8; 32]; 8];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let sub: &[f32; 32] = x[32 * j..32 * (j + 1)].try_into().expect("32 elements");
        // Larger values weigh more, plus the block's RMS so that small ones still count.
        let sum_x2: f32 = sub.iter().fold(0.0, |acc, &v| acc + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights = sub.map(|v| av_x + v.abs());
        (scales[j], mins[j]) = scale_min_search(sub, &weights, &mut quants[j]);
        max_scale = max_scale.max(scales[j]);
        max_min = max_min.max(mins[j]);
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls = scales.map(|s| nearest_int(inv_scale * s).min(63) as u8);
    let lm = mins.map(|m| nearest_int(inv_min * m).min(63) as u8);
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    // The quants are chosen again against the scales as stored (f16 times 6 bits).
    for j in 0..8 {
        let sd = d.to_f32() * ls[j] as f32;
        if sd == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * lm[j] as f32;
        for i in 0..32 {
            quants[j][i] = nearest_int((x[32 * j + i] + dm) / sd).clamp(0, 15) as u8;
        }
    }
    out.extend(d.to_le_bytes());
    out.extend(dmin.to_le_bytes());
    out.extend(pack_scales(&ls, &lm));
    // Sub-blocks 2p and 2p+1 share bytes 32p..32p+32: low nibble, then high nibble.
    for pair in quants.chunks_exact(2) {
        out.extend(pair[0].iter().zip(&pair[1]).map(|(lo, hi)| lo | (hi << 4)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{GgmlType, dequantize};

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.6, -8),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
    }

    #[test]
    fn scales_pack_as_the_dequantizer_reads_them() {
        let ls = [0, 1, 17, 63, 5, 33, 48, 63];
        let lm = [63, 2, 31, 0, 60, 16, 1, 42];
        let s = pack_scales(&ls, &lm);
        // The dequantizer's unpacking, spelled out for sub-blocks 0..4 and 4..8.
        for j in 0..8 {
            let (sc, m) = if j < 4 {
                (s[j] & 63, s[j + 4] & 63)
            } else {
                (
                    (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
                    (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
                )
            };
            assert_eq!((sc, m), (ls[j], lm[j]), "sub-block {j}");
        }
    }

    #[test]
    fn constant_and_zero_blocks() {
        let mut out = Vec::new();
        q4_k(&[0.0; QK_K], &mut out);
        let back = dequantize(GgmlType::Q4_K, &out, QK_K).unwrap();
        assert!(back.iter().all(|&v| v == 0.0));
        // A positive constant: min clamps to 0 and every quant is the top level.
        let mut out = Vec::new();
        q4_k(&[0.75; QK_K], &mut out);
        let back = dequantize(GgmlType::Q4_K, &out, QK_K).unwrap();
        for v in back {
            assert!((v - 0.75).abs() <= 0.75 * 2e-3, "{v}");
        }
    }
}
