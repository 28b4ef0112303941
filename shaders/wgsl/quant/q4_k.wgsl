// Q4_K: 144-byte super-blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit scales and
// minimums (quant/k_scales.wgsl), 128 bytes of nibbles. Chunk j (0..8) of a super-block
// is the low (j even) or high (j odd) nibbles of bytes 32 * (j / 2) ..+32;
// value = d * scale_j * q - dmin * min_j. Super-blocks are word-aligned.
#include "quant/k_scales.wgsl"

// matvec reads chunks 2p and 2p + 1 of a super-block together (`dot_group`, group
// g = 4 * super-block + p): they are the low and high nibbles of the same 32 bytes, so
// each word is loaded once, and d, dmin and the scale words once for both.
#define GROUP_CHUNKS 2

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c >> 3u) * 144u;
    let j = c & 7u;
    let dm = unpack2x16float(w[b >> 2u]);
    let sm = k_scale_min(b + 4u, j);
    let d1 = dm.x * sm.x;
    let m1 = dm.y * sm.y;
    let qs = (b + 16u + 32u * (j >> 1u)) >> 2u;
    let sh = 4u * (j & 1u);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        o[i] = d1 * byte_fields(w[qs + i], sh, 15u) - m1;
    }
    return o;
}

// Factored: d scale_j sum(q x) - dmin min_j sum(x), with no dequantized chunk in between.
fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    let b = row + (c >> 3u) * 144u;
    let j = c & 7u;
    let dm = unpack2x16float(w[b >> 2u]);
    let sm = k_scale_min(b + 4u, j);
    let qs = (b + 16u + 32u * (j >> 1u)) >> 2u;
    let sh = 4u * (j & 1u);
    var s = 0.0;
    var sx = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        s += dot(byte_fields(w[qs + i], sh, 15u), (*xs)[i]);
        sx += (*xs)[i];
    }
    return dm.x * sm.x * s - dm.y * sm.y * dot(sx, vec4<f32>(1.0));
}

fn dot_group(row: u32, g: u32, xs: ptr<function, array<vec4<f32>, 16>>) -> f32 {
    let b = row + (g >> 2u) * 144u;
    let p = g & 3u;
    let qs = (b + 16u + 32u * p) >> 2u;
    var s = vec2<f32>(0.0);
    var sx_lo = vec4<f32>(0.0);
    var sx_hi = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        let q = w[qs + i];
        s += vec2<f32>(dot(nibbles_lo(q), (*xs)[i]), dot(nibbles_hi(q), (*xs)[8u + i]));
        sx_lo += (*xs)[i];
        sx_hi += (*xs)[8u + i];
    }
    let sx = vec2<f32>(dot(sx_lo, vec4<f32>(1.0)), dot(sx_hi, vec4<f32>(1.0)));
    return k_pair_dot(k_pair(b, p), s, sx);
}
