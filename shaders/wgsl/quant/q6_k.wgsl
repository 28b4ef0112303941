// Q6_K: 210-byte super-blocks of 256: 128 bytes ql (low 4 bits), 64 bytes qh (high 2
// bits), 16 signed 8-bit scales (one per 16 elements), f16 d. In half h, chunk k (0..4)
// takes element l's low bits from the low (k < 2) or high nibble of
// ql[64h + 32 (k % 2) + l] and its high bits from bits 2k.. of qh[32h + l];
// value = d * scale * (q - 32). Super-blocks are 2-byte aligned.
#include "quant/dot_from_dq32.wgsl"

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c >> 3u) * 210u;
    let j = c & 7u;
    let h = j >> 2u;
    let k = j & 3u;
    let d = w_f16(b + 208u);
    let sc = b + 192u + 8u * h + 2u * k;
    let s0 = d * w_i8(sc);
    let s1 = d * w_i8(sc + 1u);
    let ql = b + 64u * h + 32u * (k & 1u);
    let qh = b + 128u + 32u * h;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let q = byte_fields(w_u32(ql + 4u * i), 4u * (k >> 1u), 15u) + 16.0 * byte_fields(w_u32(qh + 4u * i), 2u * k, 3u) - 32.0;
        o[i] = select(s1, s0, i < 4u) * q;
    }
    return o;
}
