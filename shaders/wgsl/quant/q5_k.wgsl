// Q5_K: 176-byte super-blocks of 256: f16 d, f16 dmin, 12 bytes of scales and minimums
// (quant/k_scales.wgsl), 32 bytes qh, 128 bytes of nibbles. As Q4_K, plus a fifth bit
// for element l of chunk j in bit j of qh[l]. Super-blocks are word-aligned.
#include "quant/k_scales.wgsl"

// matvec reads chunks 2p and 2p + 1 of a super-block together (`dot_group`, group
// g = 4 * super-block + p): the low and high nibbles of the same 32 bytes, with their
// fifth bits from the same qh words, under one read of d, dmin and the scale words.
#define GROUP_CHUNKS 2

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c >> 3u) * 176u;
    let j = c & 7u;
    let dm = unpack2x16float(w[b >> 2u]);
    let sm = k_scale_min(b + 4u, j);
    let d1 = dm.x * sm.x;
    let m1 = dm.y * sm.y;
    let qh = (b + 16u) >> 2u;
    let qs = (b + 48u + 32u * (j >> 1u)) >> 2u;
    let sh = 4u * (j & 1u);
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = byte_fields(w[qs + i], sh, 15u) + 16.0 * byte_fields(w[qh + i], j, 1u);
        o[i] = d1 * q - m1;
    }
    return o;
}

// Factored: d scale_j sum(q x) - dmin min_j sum(x).
fn dot32(row: u32, c: u32, xs: ptr<function, array<vec4<f32>, 8>>) -> f32 {
    let b = row + (c >> 3u) * 176u;
    let j = c & 7u;
    let dm = unpack2x16float(w[b >> 2u]);
    let sm = k_scale_min(b + 4u, j);
    let qh = (b + 16u) >> 2u;
    let qs = (b + 48u + 32u * (j >> 1u)) >> 2u;
    let sh = 4u * (j & 1u);
    var s = 0.0;
    var sx = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        let q = byte_fields(w[qs + i], sh, 15u) + 16.0 * byte_fields(w[qh + i], j, 1u);
        s += dot(q, (*xs)[i]);
        sx += (*xs)[i];
    }
    return dm.x * sm.x * s - dm.y * sm.y * dot(sx, vec4<f32>(1.0));
}

fn dot_group(row: u32, g: u32, xs: ptr<function, array<vec4<f32>, 16>>) -> f32 {
    let b = row + (g >> 2u) * 176u;
    let p = g & 3u;
    let qh = (b + 16u) >> 2u;
    let qs = (b + 48u + 32u * p) >> 2u;
    var s = vec2<f32>(0.0);
    var sx_lo = vec4<f32>(0.0);
    var sx_hi = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        let q = w[qs + i];
        let h = w[qh + i];
        let q_lo = nibbles_lo(q) + 16.0 * byte_fields(h, 2u * p, 1u);
        let q_hi = nibbles_hi(q) + 16.0 * byte_fields(h, 2u * p + 1u, 1u);
        s += vec2<f32>(dot(q_lo, (*xs)[i]), dot(q_hi, (*xs)[8u + i]));
        sx_lo += (*xs)[i];
        sx_hi += (*xs)[8u + i];
    }
    let sx = vec2<f32>(dot(sx_lo, vec4<f32>(1.0)), dot(sx_hi, vec4<f32>(1.0)));
    return k_pair_dot(k_pair(b, p), s, sx);
}
