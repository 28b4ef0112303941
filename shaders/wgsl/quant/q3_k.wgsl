// Q3_K: 110-byte super-blocks of 256: 32 bytes hmask, 64 bytes of 2-bit quants, 12 bytes
// of 6-bit scales (bias 32, one per 16 elements), f16 d. In half h, chunk s (0..4) takes
// element l's low bits from bits 2s.. of qs[32h + l]; bit 4h + s of hmask[l] clear
// means q - 4. value = d * scale * q. Super-blocks are 2-byte aligned.
#include "quant/dot_from_dq32.wgsl"

// Scale k (0..16): low 4 bits from the nibbles of bytes 0..8, top 2 bits from bytes 8..12.
fn q3_k_scale(s: u32, k: u32) -> f32 {
    var low = w_u8(s + (k & 7u));
    if (k >= 8u) {
        low = low >> 4u;
    }
    let high = (w_u8(s + 8u + (k & 3u)) >> (2u * (k >> 2u))) & 3u;
    return f32(i32((low & 15u) | (high << 4u)) - 32);
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c >> 3u) * 110u;
    let j = c & 7u;
    let h = j >> 2u;
    let s = j & 3u;
    let d = w_f16(b + 108u);
    let k0 = 8u * h + 2u * s;
    let d0 = d * q3_k_scale(b + 96u, k0);
    let d1 = d * q3_k_scale(b + 96u, k0 + 1u);
    let qs = b + 32u + 32u * h;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let low = byte_fields(w_u32(qs + 4u * i), 2u * s, 3u);
        let high = byte_fields(w_u32(b + 4u * i), 4u * h + s, 1u);
        o[i] = select(d1, d0, i < 4u) * (low - 4.0 + 4.0 * high);
    }
    return o;
}
