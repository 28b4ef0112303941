//! Random weights in every format the GPU kernels read: what the kernel tests use where
//! there is no quantizer (the K-quants, IQ4_NL), and what synthetic benchmark models are
//! made of, gigabytes at a time.
//!
//! Random bytes alone would make garbage: a random f16 scale is often huge, infinite or
//! NaN. So each block's f16 scale is replaced by one with a random sign and the size that
//! gives the weights the root mean square asked for, and a block's minimum (the types
//! that have one) is tied to its scale so that the weights average zero. Zero mean
//! matters: a bias shared by a whole matrix adds up over thousands of inputs and, layer
//! after layer, overflows f16 activations. Float weights get a random sign and mantissa under
//! one of four exponents. Everything is derived from the block's own random bits, so
//! filling costs little more than the ChaCha keystream itself.

use half::f16;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use super::GgmlType;

/// Why random blocks could not be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RandomBlocksError {
    #[error(
        "random {0} weights are not supported (Wisp makes them for F32, F16, BF16, Q4_0, \
         Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_NL)"
    )]
    Unsupported(GgmlType),
    #[error("{ty}: {n_elems} elements are not a whole number of {block_elems}-element blocks")]
    PartialBlock {
        ty: GgmlType,
        n_elems: u64,
        block_elems: usize,
    },
    #[error("{ty}: {len} bytes are not a whole number of {block_bytes}-byte blocks")]
    PartialBlockBytes {
        ty: GgmlType,
        len: usize,
        block_bytes: usize,
    },
    #[error("{ty}: random weights of root mean square {rms} are beyond what its scales can hold")]
    RmsOutOfRange { ty: GgmlType, rms: f32 },
}

/// How a type's random bits are made into weights.
enum Layout {
    Scaled(ScaledLayout),
    Float(FloatLayout),
}

/// A block format with an f16 scale (and maybe an f16 minimum) in each block.
struct ScaledLayout {
    /// Byte offset of each block's f16 scale `d`.
    d_at: usize,
    /// Byte offset of the f16 minimum and its value as a multiple of `d`: minus the
    /// mean of the rest of the formula, so that the weights average zero.
    min: Option<(usize, f32)>,
    /// The weights' root mean square for a scale of root mean square 1, over random
    /// quants and sub-block scales (exact sums over the formats' value ranges).
    rms_per_scale: f32,
}

/// Float bits with this exponent bias and mantissa width.
struct FloatLayout {
    bits: u32,
    exponent_bias: i32,
    mantissa_bits: u32,
}

fn layout(ty: GgmlType) -> Option<Layout> {
    let scaled = |d_at, min, rms_per_scale| {
        Some(Layout::Scaled(ScaledLayout {
            d_at,
            min,
            rms_per_scale,
        }))
    };
    match ty {
        GgmlType::F32 => Some(Layout::Float(FloatLayout {
            bits: 32,
            exponent_bias: 127,
            mantissa_bits: 23,
        })),
        GgmlType::F16 => Some(Layout::Float(FloatLayout {
            bits: 16,
            exponent_bias: 15,
            mantissa_bits: 10,
        })),
        GgmlType::BF16 => Some(Layout::Float(FloatLayout {
            bits: 16,
            exponent_bias: 127,
            mantissa_bits: 7,
        })),
        // (q - 8)·d and (q - 16)·d average -d/2: the random sign of d cancels it.
        GgmlType::Q4_0 => scaled(0, None, 4.637),
        GgmlType::Q5_0 => scaled(0, None, 9.247),
        GgmlType::Q8_0 => scaled(0, None, 73.90),
        GgmlType::IQ4_NL => scaled(0, None, 67.44),
        // q·d + m
        GgmlType::Q4_1 => scaled(0, Some((2, -7.5)), 4.610),
        GgmlType::Q5_1 => scaled(0, Some((2, -15.5)), 9.233),
        // d·scale·q - dmin·min, with scale and min random sub-block values
        GgmlType::Q2_K => scaled(80, Some((82, 1.5)), 13.87),
        GgmlType::Q4_K => scaled(0, Some((2, 7.5)), 258.3),
        GgmlType::Q5_K => scaled(0, Some((2, 15.5)), 526.9),
        // d·scale·q with signed scales and quants
        GgmlType::Q3_K => scaled(108, None, 43.34),
        GgmlType::Q6_K => scaled(208, None, 1365.7),
        _ => None,
    }
}

/// The scales a block can get, indexed by a random byte: [0.5, 1.5) times the size,
/// whose root mean square is this much times the size.
const SCALE_SPREAD_RMS: f32 = 1.039;

/// Float weights take one of four consecutive exponents from 2^e: their root mean
/// square is this much times 2^e.
const FLOAT_RMS_PER_EXPONENT: f32 = 7.042;

/// Fills `out`, a whole number of `ty` blocks, with random weights of mean zero and root
/// mean square about `rms` (within a factor of 1.5 for the float types, whose size is
/// a power of two), determined by `seed`. Filling fewer blocks gives the first bytes of
/// a longer fill with the same seed.
pub fn fill_random_blocks(
    ty: GgmlType,
    out: &mut [u8],
    seed: u64,
    rms: f32,
) -> Result<(), RandomBlocksError> {
    let layout = layout(ty).ok_or(RandomBlocksError::Unsupported(ty))?;
    let block_bytes = ty.block_bytes();
    if !out.len().is_multiple_of(block_bytes) {
        return Err(RandomBlocksError::PartialBlockBytes {
            ty,
            len: out.len(),
            block_bytes,
        });
    }
    let out_of_range = RandomBlocksError::RmsOutOfRange { ty, rms };
    if !(rms.is_finite() && rms > 0.0) {
        return Err(out_of_range);
    }
    match layout {
        Layout::Scaled(scaled) => {
            let scales = scaled.scales(rms).ok_or(out_of_range)?;
            scaled.fill(out, block_bytes, seed, &scales);
        }
        Layout::Float(float) => {
            let lowest = float.lowest_exponent(rms).ok_or(out_of_range)?;
            float.fill(out, seed, lowest);
        }
    }
    Ok(())
}

impl ScaledLayout {
    /// The `(d, min)` pairs a block can get, indexed by a random byte, for weights of root
    /// mean square `rms`; `None` when the f16 scales cannot hold them.
    fn scales(&self, rms: f32) -> Option<Vec<(f16, f16)>> {
        let size = rms / (self.rms_per_scale * SCALE_SPREAD_RMS);
        let scales: Vec<(f16, f16)> = (0..256)
            .map(|i| {
                let d = f16::from_f32(size * (0.5 + i as f32 / 256.0));
                (
                    d,
                    f16::from_f32(d.to_f32() * self.min.map_or(0.0, |(_, m)| m)),
                )
            })
            .collect();
        // Subnormal scales are fine (trained Q6_K files have them); zero ones are not.
        scales
            .iter()
            .all(|&(d, m)| d.is_finite() && d.to_f32() > 0.0 && m.is_finite())
            .then_some(scales)
    }

    /// Random blocks whose scale (and minimum) is one of `scales` with a random sign.
    fn fill(&self, out: &mut [u8], block_bytes: usize, seed: u64, scales: &[(f16, f16)]) {
        let d_at = self.d_at;
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(out);
        for block in out.chunks_exact_mut(block_bytes) {
            let (d, m) = scales[block[d_at] as usize];
            let negate = block[d_at + 1] & 0x80 != 0;
            let (d, m) = if negate { (-d, -m) } else { (d, m) };
            block[d_at..d_at + 2].copy_from_slice(&d.to_le_bytes());
            if let Some((at, _)) = self.min {
                block[at..at + 2].copy_from_slice(&m.to_le_bytes());
            }
        }
    }
}

impl FloatLayout {
    /// The lowest of the four exponent fields that give weights of root mean square about
    /// `rms`; `None` when the four do not all fit the format's normal exponents.
    fn lowest_exponent(&self, rms: f32) -> Option<i32> {
        let lowest = (rms / FLOAT_RMS_PER_EXPONENT).log2().round() as i32 + self.exponent_bias;
        let highest = lowest + 3;
        let max_field = (1 << (self.bits - 1 - self.mantissa_bits)) - 2;
        (lowest >= 1 && highest <= max_field).then_some(lowest)
    }

    /// Random floats: random sign and mantissa, exponent `lowest` plus two random bits.
    fn fill(&self, out: &mut [u8], seed: u64, lowest: i32) {
        let (bits, mantissa_bits) = (self.bits, self.mantissa_bits);
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(out);
        // Eight bytes at a time, every lane alike (the exponent sums stay in their
        // lanes: `lowest_exponent` keeps them at most the largest exponent field).
        let lanes = |v: u32| (0..64 / bits).fold(0u64, |acc, i| acc | (v as u64) << (i * bits));
        let keep = lanes((1 << (bits - 1)) | ((1 << mantissa_bits) - 1));
        let (exponent_choice, lowest) = (lanes(3), lanes(lowest as u32));
        let with_exponent = |r: u64| {
            (r & keep) | ((lowest + ((r >> mantissa_bits) & exponent_choice)) << mantissa_bits)
        };
        let mut words = out.chunks_exact_mut(8);
        for w in &mut words {
            let r = u64::from_le_bytes(w.try_into().expect("eight bytes"));
            w.copy_from_slice(&with_exponent(r).to_le_bytes());
        }
        let tail = words.into_remainder();
        let mut last = [0; 8];
        last[..tail.len()].copy_from_slice(tail);
        let patched = with_exponent(u64::from_le_bytes(last)).to_le_bytes();
        tail.copy_from_slice(&patched[..tail.len()]);
    }
}

/// `n_elems` random weights of type `ty`, as [`fill_random_blocks`] makes them.
pub fn random_blocks(
    ty: GgmlType,
    n_elems: u64,
    seed: u64,
    rms: f32,
) -> Result<Vec<u8>, RandomBlocksError> {
    if layout(ty).is_none() {
        return Err(RandomBlocksError::Unsupported(ty));
    }
    let len = ty
        .bytes_for(n_elems)
        .ok_or(RandomBlocksError::PartialBlock {
            ty,
            n_elems,
            block_elems: ty.block_elems(),
        })?;
    let mut out = vec![0; len as usize];
    fill_random_blocks(ty, &mut out, seed, rms)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{can_dequantize, dequantize};

    /// Random weights exist for exactly the types the CPU reference decodes.
    fn supported() -> impl Iterator<Item = GgmlType> {
        GgmlType::ALL.into_iter().filter(|&t| can_dequantize(t))
    }

    fn mean_and_rms(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
        let rms = (values.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n).sqrt();
        (mean, rms)
    }

    #[test]
    fn every_supported_type_has_the_asked_root_mean_square_and_mean_zero() {
        let n = 1 << 18;
        for ty in supported() {
            for rms in [0.03, 1.0] {
                let values =
                    dequantize(ty, &random_blocks(ty, n, 3, rms).unwrap(), n as usize).unwrap();
                assert!(
                    values.iter().all(|v| v.is_finite()),
                    "{ty}: a value is not finite"
                );
                let (mean, got) = mean_and_rms(&values);
                let (low, high) = match ty {
                    GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => (rms / 1.5, rms * 1.5),
                    _ => (rms * 0.95, rms * 1.05),
                };
                assert!(
                    (low as f64..high as f64).contains(&got),
                    "{ty}: root mean square {got}, asked {rms}"
                );
                assert!(
                    mean.abs() < 0.02 * got,
                    "{ty}: mean {mean} of weights of root mean square {got}"
                );
            }
        }
    }

    #[test]
    fn model_sized_floats_lie_within_a_sixteenth() {
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            // An odd count: the last values are patched apart from the eight-byte words.
            let values =
                dequantize(ty, &random_blocks(ty, 10_001, 9, 0.03).unwrap(), 10_001).unwrap();
            assert!(
                values
                    .iter()
                    .all(|v| (1.0 / 256.0..1.0 / 16.0).contains(&v.abs())),
                "{ty}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let a = random_blocks(GgmlType::Q4_K, 1024, 5, 1.0).unwrap();
        assert_eq!(a, random_blocks(GgmlType::Q4_K, 1024, 5, 1.0).unwrap());
        assert_ne!(a, random_blocks(GgmlType::Q4_K, 1024, 6, 1.0).unwrap());
    }

    #[test]
    fn bad_requests_are_errors() {
        for ty in GgmlType::ALL.into_iter().filter(|&t| !can_dequantize(t)) {
            assert_eq!(
                random_blocks(ty, 256 * 32, 0, 1.0),
                Err(RandomBlocksError::Unsupported(ty))
            );
        }
        let err = random_blocks(GgmlType::Q4_K, 100, 0, 1.0).unwrap_err();
        assert!(err.to_string().contains("256-element blocks"), "{err}");
        let err = fill_random_blocks(GgmlType::Q4_0, &mut [0; 20], 0, 1.0).unwrap_err();
        assert!(err.to_string().contains("18-byte blocks"), "{err}");
        for (ty, rms) in [
            (GgmlType::Q4_0, 1e6),
            (GgmlType::Q6_K, 1e-7),
            (GgmlType::F16, 1e5),
            (GgmlType::F32, f32::NAN),
            (GgmlType::Q8_0, 0.0),
        ] {
            let err = random_blocks(ty, 256, 0, rms).unwrap_err();
            assert!(
                matches!(err, RandomBlocksError::RmsOutOfRange { ty: t, .. } if t == ty),
                "{ty} {rms}: {err}"
            );
        }
    }
}
