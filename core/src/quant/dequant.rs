//! CPU dequantization reference: GGML blocks to f32, exactly as llama.cpp decodes them.
//!
//! This is the reference the GPU shaders are checked against, so it favours plain code
//! whose arithmetic follows ggml's order of operations (`(d * scale) * q - d_min * min`
//! and so on) — that makes it bit-exact against ggml's and gguf-py's decoders, which the
//! fixtures in `tests/fixtures/quant` verify. Rust never fuses `a * b + c` into an FMA
//! unless asked, so the rounding is the same as theirs.
//!
//! Block layouts (`ggml-common.h`), little-endian, `d`/`m`/`dmin` are f16:
//!
//! | type   | bytes | layout |
//! |--------|-------|--------|
//! | Q4_0   | 18  | d, qs[16]: element j is the low nibble of qs[j], j+16 the high one; (q-8)·d |
//! | Q4_1   | 20  | d, m, qs[16]: q·d + m |
//! | Q5_0   | 22  | d, qh: u32 (bit j = 5th bit of element j), qs[16]; (q-16)·d |
//! | Q5_1   | 24  | d, m, qh: u32, qs[16]; q·d + m |
//! | Q8_0   | 34  | d, qs: i8[32]; q·d |
//! | IQ4_NL | 18  | d, qs[16] as Q4_0, each nibble indexes a fixed non-linear table |
//! | Q2_K   | 84  | scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), d, dmin |
//! | Q3_K   | 110 | hmask[32], qs[64] (2 bits), scales[12] (16 × 6 bits, biased by 32), d |
//! | Q4_K   | 144 | d, dmin, scales[12] (8 × 6-bit scale and min), qs[128] (4 bits) |
//! | Q5_K   | 176 | d, dmin, scales[12], qh[32] (5th bits), qs[128] |
//! | Q6_K   | 210 | ql[128] (low 4 bits), qh[64] (high 2 bits), scales: i8[16], d |

use half::{bf16, f16};

use super::GgmlType;

mod quantize;
mod quantize_q4_k;
pub use quantize::{can_quantize, quantize};

/// Why data could not be (de)quantized. Every variant names the type involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    #[error(
        "dequantizing {0} is not supported (the CPU reference handles F32, F16, BF16, Q4_0, \
         Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_NL)"
    )]
    UnsupportedDequant(GgmlType),
    #[error(
        "quantizing to {0} is not supported (the CPU quantizer handles F32, F16, BF16, Q4_0, \
         Q4_1, Q5_0, Q5_1, Q8_0 and Q4_K)"
    )]
    UnsupportedQuant(GgmlType),
    #[error("{ty}: {n_elems} elements are not a whole number of {block_elems}-element blocks")]
    PartialBlock {
        ty: GgmlType,
        n_elems: usize,
        block_elems: usize,
    },
    #[error("{ty}: {n_elems} elements take {expected} bytes, but {found} bytes were given")]
    WrongLength {
        ty: GgmlType,
        n_elems: usize,
        expected: usize,
        found: usize,
    },
}

/// Whether [`dequantize`] handles `ty`.
pub fn can_dequantize(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | IQ4_NL
    )
}

/// Bytes that `n_elems` elements of `ty` take, or why that is not a valid size.
pub fn encoded_len(ty: GgmlType, n_elems: usize) -> Result<usize, DequantError> {
    let block_elems = ty.block_elems();
    if !n_elems.is_multiple_of(block_elems) {
        return Err(DequantError::PartialBlock {
            ty,
            n_elems,
            block_elems,
        });
    }
    // Overflow needs more elements than memory can hold; report it as a length mismatch.
    (n_elems / block_elems)
        .checked_mul(ty.block_bytes())
        .ok_or(DequantError::WrongLength {
            ty,
            n_elems,
            expected: usize::MAX,
            found: 0,
        })
}

/// Decodes `n_elems` elements of type `ty` from `bytes`, which must hold exactly them.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elems: usize) -> Result<Vec<f32>, DequantError> {
    // Validate before allocating: `n_elems` may come from a file.
    check(ty, bytes, n_elems)?;
    let mut out = vec![0f32; n_elems];
    dequantize_row_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Decodes `bytes` into `out`, which receives exactly the elements the bytes hold
/// (`out.len()` elements; `bytes` must be their exact encoding, e.g. one tensor row).
pub fn dequantize_row_into(
    ty: GgmlType,
    bytes: &[u8],
    out: &mut [f32],
) -> Result<(), DequantError> {
    check(ty, bytes, out.len())?;
    use GgmlType::*;
    match ty {
        F32 => {
            for (o, b) in out.iter_mut().zip(bytes.as_chunks::<4>().0) {
                *o = f32::from_le_bytes(*b);
            }
        }
        F16 => {
            for (o, b) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = f16::from_le_bytes(*b).to_f32();
            }
        }
        BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = bf16::from_le_bytes(*b).to_f32();
            }
        }
        Q4_0 => blocks(bytes, out, q4_0),
        Q4_1 => blocks(bytes, out, q4_1),
        Q5_0 => blocks(bytes, out, q5_0),
        Q5_1 => blocks(bytes, out, q5_1),
        Q8_0 => blocks(bytes, out, q8_0),
        IQ4_NL => blocks(bytes, out, iq4_nl),
        Q2_K => blocks(bytes, out, q2_k),
        Q3_K => blocks(bytes, out, q3_k),
        Q4_K => blocks(bytes, out, q4_k),
        Q5_K => blocks(bytes, out, q5_k),
        Q6_K => blocks(bytes, out, q6_k),
        _ => return Err(DequantError::UnsupportedDequant(ty)),
    }
    Ok(())
}

fn check(ty: GgmlType, bytes: &[u8], n_elems: usize) -> Result<(), DequantError> {
    if !can_dequantize(ty) {
        return Err(DequantError::UnsupportedDequant(ty));
    }
    let expected = encoded_len(ty, n_elems)?;
    if bytes.len() != expected {
        return Err(DequantError::WrongLength {
            ty,
            n_elems,
            expected,
            found: bytes.len(),
        });
    }
    Ok(())
}

/// Runs a block decoder over whole blocks. Sizes were checked by the caller; typing each
/// block as a fixed-size array lets every index inside the decoders be checked at compile
/// time rather than at run time.
fn blocks<const B: usize, const E: usize>(
    bytes: &[u8],
    out: &mut [f32],
    decode: fn(&[u8; B], &mut [f32; E]),
) {
    let (ins, _) = bytes.as_chunks::<B>();
    let (outs, _) = out.as_chunks_mut::<E>();
    for (b, o) in ins.iter().zip(outs) {
        decode(b, o);
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The 16 levels of IQ4_NL (and IQ4_XS): a non-uniform grid, denser near zero.
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

fn q4_0(b: &[u8; 18], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        out[j] = ((q & 0xF) as i32 - 8) as f32 * d;
        out[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8; 20], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for j in 0..16 {
        let q = b[4 + j];
        out[j] = (q & 0xF) as f32 * d + m;
        out[j + 16] = (q >> 4) as f32 * d + m;
    }
}

fn q5_0(b: &[u8; 22], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let q = b[6 + j];
        let lo = (q & 0xF) as u32 | ((qh >> j) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        out[j] = (lo as i32 - 16) as f32 * d;
        out[j + 16] = (hi as i32 - 16) as f32 * d;
    }
}

fn q5_1(b: &[u8; 24], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let q = b[8 + j];
        let lo = (q & 0xF) as u32 | ((qh >> j) & 1) << 4;
        let hi = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        out[j] = lo as f32 * d + m;
        out[j + 16] = hi as f32 * d + m;
    }
}

fn q8_0(b: &[u8; 34], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        out[j] = b[2 + j] as i8 as f32 * d;
    }
}

fn iq4_nl(b: &[u8; 18], out: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        out[j] = d * IQ4_NL_VALUES[(q & 0xF) as usize] as f32;
        out[j + 16] = d * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
    }
}

/// Q2_K: 16 sub-blocks of 16 elements. Element `i = h*128 + s*32 + l` (half h, 2-bit
/// plane s, lane l) is bits `2s..2s+2` of `qs[h*32 + l]`; sub-block `i / 16` has a 4-bit
/// scale (low nibble of `scales[i/16]`) and a 4-bit min (high nibble).
fn q2_k(b: &[u8; 84], out: &mut [f32; 256]) {
    let (scales, rest) = b.split_at(16);
    let (qs, ds) = rest.split_at(64);
    let d = f16_at(ds, 0);
    let dmin = f16_at(ds, 2);
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let i = h * 128 + s * 32 + l;
                let sc = scales[i / 16];
                let dl = d * (sc & 0xF) as f32;
                let ml = dmin * (sc >> 4) as f32;
                let q = (qs[h * 32 + l] >> (2 * s)) & 3;
                out[i] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q3_K's 16 six-bit scales: low 4 bits in `scales[0..8]` (low nibbles for sub-blocks
/// 0..8, high nibbles for 8..16), high 2 bits in `scales[8..12]` (byte `k % 4`, bits
/// `2*(k/4)..`), stored with a bias of 32.
fn q3_k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (k, o) in out.iter_mut().enumerate() {
        let low = if k < 8 { s[k] & 0xF } else { s[k - 8] >> 4 };
        let high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
        *o = ((low | high << 4) as i32 - 32) as i8;
    }
    out
}

/// Q3_K: element `i = h*128 + s*32 + l` has its low 2 bits in bits `2s..` of
/// `qs[h*32 + l]` and its third bit in bit `4h + s` of `hmask[l]`; a *clear* high bit
/// means subtract 4 (values span -4..=3).
fn q3_k(b: &[u8; 110], out: &mut [f32; 256]) {
    let (hmask, rest) = b.split_at(32);
    let (qs, rest) = rest.split_at(64);
    let (scales, ds) = rest.split_at(12);
    let d = f16_at(ds, 0);
    let sc = q3_k_scales(scales);
    for h in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let i = h * 128 + s * 32 + l;
                let low = ((qs[h * 32 + l] >> (2 * s)) & 3) as i32;
                let high_set = (hmask[l] >> (4 * h + s)) & 1 != 0;
                let q = if high_set { low } else { low - 4 };
                let dl = d * sc[i / 16] as f32;
                out[i] = dl * q as f32;
            }
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block: sub-blocks 0..4
/// use the low 6 bits of `s[j]` and `s[j+4]`; 4..8 take their low 4 bits from `s[j+4]`'s
/// nibbles and their top 2 bits from the top bits of `s[j-4]` and `s[j]`.
fn k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K: 8 sub-blocks of 32. Elements `64p .. 64p+32` are the low nibbles of
/// `qs[32p .. 32p+32]` (sub-block 2p), the next 32 the high nibbles (sub-block 2p+1).
fn q4_k(b: &[u8; 144], out: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for sb in 0..8 {
        let (sc, m) = k_scale_min(scales, sb);
        let d1 = d * sc as f32;
        let m1 = dmin * m as f32;
        let (p, shift) = (sb / 2, 4 * (sb % 2));
        for l in 0..32 {
            let q = (qs[p * 32 + l] >> shift) & 0xF;
            out[sb * 32 + l] = d1 * q as f32 - m1;
        }
    }
}

/// Q5_K: as Q4_K, plus a fifth bit for element `32*sb + l` in bit `sb` of `qh[l]`.
fn q5_k(b: &[u8; 176], out: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for sb in 0..8 {
        let (sc, m) = k_scale_min(scales, sb);
        let d1 = d * sc as f32;
        let m1 = dmin * m as f32;
        let (p, shift) = (sb / 2, 4 * (sb % 2));
        for l in 0..32 {
            let q = ((qs[p * 32 + l] >> shift) & 0xF) | (((qh[l] >> sb) & 1) << 4);
            out[sb * 32 + l] = d1 * q as f32 - m1;
        }
    }
}

/// Q6_K: per 128-element half `h`, element `h*128 + 32*k + l` (k in 0..4) takes its low 4
/// bits from `ql[h*64 + l + 32*(k%2)]` (low nibble for k < 2, high for k >= 2) and its
/// high 2 bits from bits `2k..` of `qh[h*32 + l]`; values are biased by 32; sub-block
/// `i / 16` has a signed 8-bit scale.
fn q6_k(b: &[u8; 210], out: &mut [f32; 256]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for h in 0..2 {
        for k in 0..4 {
            for l in 0..32 {
                let i = h * 128 + k * 32 + l;
                let low_byte = ql[h * 64 + l + 32 * (k % 2)];
                let low = if k < 2 { low_byte & 0xF } else { low_byte >> 4 };
                let high = (qh[h * 32 + l] >> (2 * k)) & 3;
                let q = (low | high << 4) as i32 - 32;
                let sc = scales[i / 16] as i8;
                out[i] = d * sc as f32 * q as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn rejects_wrong_lengths_and_types() {
        let err = dequantize(GgmlType::Q4_0, &[0; 17], 32).unwrap_err();
        assert_eq!(
            err,
            DequantError::WrongLength {
                ty: GgmlType::Q4_0,
                n_elems: 32,
                expected: 18,
                found: 17
            }
        );
        assert!(err.to_string().contains("Q4_0"), "{err}");
        let err = dequantize(GgmlType::Q4_0, &[0; 18], 31).unwrap_err();
        assert!(matches!(err, DequantError::PartialBlock { .. }), "{err}");
        let err = dequantize(GgmlType::IQ2_XXS, &[0; 66], 256).unwrap_err();
        assert!(err.to_string().contains("IQ2_XXS"), "{err}");
        // A huge element count from a corrupt file must not allocate before failing.
        let err = dequantize(GgmlType::Q8_0, &[0; 34], usize::MAX / 64 * 32).unwrap_err();
        assert!(matches!(err, DequantError::WrongLength { .. }), "{err}");
        let mut out = [0f32; 3];
        assert!(dequantize_row_into(GgmlType::F32, &[0; 8], &mut out).is_err());
    }

    #[test]
    fn q4_0_by_hand() {
        let mut b = vec![];
        b.extend(f16_bytes(0.5));
        // qs[0] = 0x0F: element 0 -> (15-8)*0.5 = 3.5, element 16 -> (0-8)*0.5 = -4.
        b.push(0x0F);
        b.extend([0x88; 15]);
        let v = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!(v[0], 3.5);
        assert_eq!(v[16], -4.0);
        assert!(
            v.iter()
                .enumerate()
                .all(|(i, &x)| i == 0 || i == 16 || x == 0.0)
        );
    }

    #[test]
    fn q8_0_and_q4_1_by_hand() {
        let mut b = vec![];
        b.extend(f16_bytes(0.25));
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let v = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(
            v,
            (0..32).map(|i| (i - 16) as f32 * 0.25).collect::<Vec<_>>()
        );

        let mut b = vec![];
        b.extend(f16_bytes(2.0));
        b.extend(f16_bytes(-1.0));
        b.extend([0x31; 16]);
        let v = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_eq!(v[0], 1.0); // 1*2 - 1
        assert_eq!(v[31], 5.0); // 3*2 - 1
    }

    #[test]
    fn q6_k_zero_point() {
        // All quants 32 (low nibble 0, high bits 2) decode to zero whatever the scales.
        let mut b = [0u8; 210];
        b[128..192].fill(0b1010_1010);
        b[192..208].fill(7);
        b[208..210].copy_from_slice(&f16_bytes(1.5));
        let v = dequantize(GgmlType::Q6_K, &b, 256).unwrap();
        assert!(v.iter().all(|&x| x == 0.0), "{v:?}");
    }

    #[test]
    fn scalar_types() {
        let xs = [1.0f32, -2.5, 0.0, 65504.0];
        let f32b: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F32, &f32b, 4).unwrap(), xs);
        let f16b: Vec<u8> = xs.iter().flat_map(|&x| f16_bytes(x)).collect();
        assert_eq!(dequantize(GgmlType::F16, &f16b, 4).unwrap(), xs);
        let bf: Vec<u8> = [1.0f32, -2.5, 0.0]
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(
            dequantize(GgmlType::BF16, &bf, 3).unwrap(),
            [1.0, -2.5, 0.0]
        );
    }
}
