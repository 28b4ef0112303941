//! Reference quantizers: f32 to GGML blocks, as llama.cpp's `quantize_row_*_ref` do (no
//! importance weighting). The 32-element types round to nearest; Q4_K searches its
//! sub-block scales (`quantize_q4_k.rs`).
//!
//! They build test models and test data and back `wisp convert` and `--quantize`; the
//! 32-element types match gguf-py's quantizers bit for bit (checked by the fixtures in
//! `tests/fixtures/quant`; gguf-py has no Q4_K quantizer). Each block's scale is
//! computed in f32 and used unrounded to pick the quants, then stored as f16 — exactly what
//! ggml does, so the stored scale differs slightly from the one used to round.

use half::{bf16, f16};

use super::quantize_q4_k::q4_k;
use super::{DequantError, encoded_len};
use crate::quant::GgmlType;

/// Whether [`quantize`] handles `ty`.
pub fn can_quantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K
    )
}

/// Encodes `values` as `ty`. The length must be a whole number of blocks.
///
/// Non-finite inputs are encoded as ggml would (which for the block types means garbage
/// quants); callers wanting clean test data should pass finite values.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Result<Vec<u8>, DequantError> {
    if !can_quantize(ty) {
        return Err(DequantError::UnsupportedQuant(ty));
    }
    let mut out = Vec::with_capacity(encoded_len(ty, values.len())?);
    let (blocks, _) = values.as_chunks::<32>();
    use GgmlType::*;
    match ty {
        F32 => values.iter().for_each(|x| out.extend(x.to_le_bytes())),
        F16 => values
            .iter()
            .for_each(|&x| out.extend(f16::from_f32(x).to_le_bytes())),
        // half rounds to nearest even and keeps NaNs quiet, as ggml_compute_fp32_to_bf16.
        BF16 => values
            .iter()
            .for_each(|&x| out.extend(bf16::from_f32(x).to_le_bytes())),
        Q4_0 => blocks.iter().for_each(|b| q4_0(b, &mut out)),
        Q4_1 => blocks.iter().for_each(|b| q4_1(b, &mut out)),
        Q5_0 => blocks.iter().for_each(|b| q5_0(b, &mut out)),
        Q5_1 => blocks.iter().for_each(|b| q5_1(b, &mut out)),
        Q8_0 => blocks.iter().for_each(|b| q8_0(b, &mut out)),
        Q4_K => values
            .as_chunks::<256>()
            .0
            .iter()
            .for_each(|b| q4_k(b, &mut out)),
        _ => return Err(DequantError::UnsupportedQuant(ty)),
    }
    Ok(out)
}

fn push_f16(out: &mut Vec<u8>, x: f32) {
    out.extend(f16::from_f32(x).to_le_bytes());
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// The element of largest magnitude, keeping its sign (the first one on ties, as ggml).
fn signed_absmax(b: &[f32; 32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &x in b {
        if amax < x.abs() {
            amax = x.abs();
            max = x;
        }
    }
    max
}

fn min_max(b: &[f32; 32]) -> (f32, f32) {
    b.iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// Packs 32 quants of up to 4 bits: element j in the low nibble of byte j, j+16 in the high.
fn pack_nibbles(q: &[u8; 32], out: &mut Vec<u8>) {
    for j in 0..16 {
        out.push((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    }
}

/// The fifth bits of 32 five-bit quants, bit j for element j.
fn high_bits(q: &[u8; 32]) -> u32 {
    q.iter()
        .enumerate()
        .fold(0u32, |acc, (j, &v)| acc | (((v >> 4) & 1) as u32) << j)
}

/// Q8_0: d = amax / 127, q = round(x / d) (halves away from zero, as `roundf`).
fn q8_0(b: &[f32; 32], out: &mut Vec<u8>) {
    let amax = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    push_f16(out, d);
    for &x in b {
        out.push((x * id).round() as i8 as u8);
    }
}

/// Q4_0: d = max / -8 where max is the signed largest-magnitude value, so that value maps
/// to quant 0 exactly and the other side gets the extra level.
fn q4_0(b: &[f32; 32], out: &mut Vec<u8>) {
    let d = signed_absmax(b) / -8.0;
    let id = inverse(d);
    push_f16(out, d);
    // `as u8` truncates toward zero (ggml's int cast) and the +8.5 makes that a rounding.
    let q = b.map(|x| ((x * id + 8.5) as u8).min(15));
    pack_nibbles(&q, out);
}

/// Q4_1: d = (max - min) / 15, m = min, q = round((x - min) / d).
fn q4_1(b: &[f32; 32], out: &mut Vec<u8>) {
    let (min, max) = min_max(b);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    push_f16(out, d);
    push_f16(out, min);
    let q = b.map(|x| (((x - min) * id + 0.5) as u8).min(15));
    pack_nibbles(&q, out);
}

/// Q5_0: as Q4_0 with 32 levels (d = max / -16).
fn q5_0(b: &[f32; 32], out: &mut Vec<u8>) {
    let d = signed_absmax(b) / -16.0;
    let id = inverse(d);
    push_f16(out, d);
    let q = b.map(|x| ((x * id + 16.5) as u8).min(31));
    out.extend(high_bits(&q).to_le_bytes());
    pack_nibbles(&q, out);
}

/// Q5_1: as Q4_1 with 32 levels (d = (max - min) / 31).
fn q5_1(b: &[f32; 32], out: &mut Vec<u8>) {
    let (min, max) = min_max(b);
    let d = (max - min) / 31.0;
    let id = inverse(d);
    push_f16(out, d);
    push_f16(out, min);
    let q = b.map(|x| (((x - min) * id + 0.5) as u8).min(31));
    out.extend(high_bits(&q).to_le_bytes());
    pack_nibbles(&q, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    /// Deterministic test values in [-scale, scale) (xorshift; no dependency needed).
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// Round-to-nearest error is at most half a step per element, plus the f16 rounding of
    /// the stored scale (every level moves by at most 2^-11 relative). Exception: Q4_0 and
    /// Q5_0 put the largest-magnitude value at level -8 (-16), so the other sign only
    /// reaches 7/8 (15/16) of it and values there may be clipped by up to one full step.
    #[test]
    fn round_trip_error_bounds() {
        for (seed, scale) in [(1, 1.0), (7, 0.01), (42, 300.0)] {
            let xs = values(32 * 64, seed, scale);
            for ty in [
                GgmlType::Q8_0,
                GgmlType::Q4_0,
                GgmlType::Q4_1,
                GgmlType::Q5_0,
                GgmlType::Q5_1,
            ] {
                let q = quantize(ty, &xs).unwrap();
                assert_eq!(q.len(), ty.bytes_for(xs.len() as u64).unwrap() as usize);
                let back = dequantize(ty, &q, xs.len()).unwrap();
                for (blk, (xb, yb)) in xs.chunks(32).zip(back.chunks(32)).enumerate() {
                    let lo = xb.iter().cloned().fold(f32::MAX, f32::min);
                    let hi = xb.iter().cloned().fold(f32::MIN, f32::max);
                    let amax = lo.abs().max(hi.abs());
                    let step_error = match ty {
                        GgmlType::Q8_0 => amax / 127.0 * 0.5,
                        GgmlType::Q4_0 => amax / 8.0,
                        GgmlType::Q5_0 => amax / 16.0,
                        GgmlType::Q4_1 => (hi - lo) / 15.0 * 0.5,
                        _ => (hi - lo) / 31.0 * 0.5,
                    };
                    let bound = step_error * 1.0001 + amax * 2e-3;
                    for (x, y) in xb.iter().zip(yb) {
                        assert!(
                            (x - y).abs() <= bound,
                            "{ty} seed {seed} block {blk}: {x} -> {y} (bound {bound})"
                        );
                    }
                }
            }
        }
    }

    /// Q4_K spends about as many bits per element as Q4_1 (4.5 against 5), and its searched
    /// scales must make up for the coarser 6-bit sub-block scales: its RMS error stays
    /// within 10% of Q4_1's, and no element is off by more than one step of its sub-block.
    #[test]
    fn q4_k_round_trip_error() {
        let rms = |a: &[f32], b: &[f32]| {
            (a.iter()
                .zip(b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum::<f64>()
                / a.len() as f64)
                .sqrt()
        };
        for (seed, scale) in [(3, 1.0), (11, 0.02), (99, 40.0)] {
            let xs = values(256 * 32, seed, scale);
            let q = quantize(GgmlType::Q4_K, &xs).unwrap();
            assert_eq!(q.len(), 144 * 32);
            let back = dequantize(GgmlType::Q4_K, &q, xs.len()).unwrap();
            let q41 = dequantize(
                GgmlType::Q4_1,
                &quantize(GgmlType::Q4_1, &xs).unwrap(),
                xs.len(),
            )
            .unwrap();
            let (e_k, e_1) = (rms(&xs, &back), rms(&xs, &q41));
            assert!(
                e_k <= 1.1 * e_1,
                "seed {seed}: Q4_K rms {e_k} against Q4_1 {e_1}"
            );
            for (sub, (xb, yb)) in xs.chunks(32).zip(back.chunks(32)).enumerate() {
                let (lo, hi) = min_max(xb.try_into().unwrap());
                let step = (hi - lo.min(0.0)) / 15.0;
                for (x, y) in xb.iter().zip(yb) {
                    assert!(
                        (x - y).abs() <= step,
                        "seed {seed} sub-block {sub}: {x} -> {y} (step {step})"
                    );
                }
            }
        }
    }

    #[test]
    fn exact_cases() {
        // Zeros stay zero (d = 0 gives id = 0, never a division by zero).
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
        ] {
            let back = dequantize(ty, &quantize(ty, &[0.0; 32]).unwrap(), 32).unwrap();
            assert!(back.iter().all(|&x| x == 0.0), "{ty}: {back:?}");
        }
        // Q8_0 reproduces integers in -127..=127 times a power of two exactly.
        let xs: Vec<f32> = (0..32)
            .map(|i| (i as f32 - 16.0) * 0.5)
            .chain([63.5])
            .skip(1)
            .collect();
        let back = dequantize(GgmlType::Q8_0, &quantize(GgmlType::Q8_0, &xs).unwrap(), 32).unwrap();
        let err: f32 = xs
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err <= 0.25, "{err}");
        // The largest-magnitude value of a Q4_0 block is reproduced up to the f16 scale.
        let mut xs = vec![0.1f32; 32];
        xs[5] = -3.0;
        let back = dequantize(GgmlType::Q4_0, &quantize(GgmlType::Q4_0, &xs).unwrap(), 32).unwrap();
        assert_eq!(back[5], -3.0);
        // Scalar types.
        let xs = [1.0f32, -0.5, 3.25, 0.0];
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            assert_eq!(dequantize(ty, &quantize(ty, &xs).unwrap(), 4).unwrap(), xs);
        }
    }

    #[test]
    fn rejects_unsupported_and_partial() {
        assert_eq!(
            quantize(GgmlType::Q6_K, &[0.0; 256]),
            Err(DequantError::UnsupportedQuant(GgmlType::Q6_K))
        );
        assert!(matches!(
            quantize(GgmlType::Q4_K, &[0.0; 32]),
            Err(DequantError::PartialBlock { .. })
        ));
        assert!(matches!(
            quantize(GgmlType::Q8_0, &[0.0; 33]),
            Err(DequantError::PartialBlock { .. })
        ));
    }
}
