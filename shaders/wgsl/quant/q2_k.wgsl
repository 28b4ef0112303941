// Q2_K: 84-byte super-blocks of 256: 16 bytes of scales (low nibble: scale, high nibble:
// minimum, one per 16 elements), 64 bytes of 2-bit quants, f16 d, f16 dmin. In half h,
// chunk s (0..4) is bits 2s.. of qs[32h + l]; value = d * scale * q - dmin * min.
// Super-blocks are word-aligned.
#include "quant/dot_from_dq32.wgsl"

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + (c >> 3u) * 84u;
    let j = c & 7u;
    let h = j >> 2u;
    let s = j & 3u;
    let dm = unpack2x16float(w[(b + 80u) >> 2u]);
    let sc0 = w_u8(b + 8u * h + 2u * s);
    let sc1 = w_u8(b + 8u * h + 2u * s + 1u);
    let qs = (b + 16u + 32u * h) >> 2u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let sc = select(sc1, sc0, i < 4u);
        let q = byte_fields(w[qs + i], 2u * s, 3u);
        o[i] = dm.x * f32(i32(sc & 15u)) * q - dm.y * f32(i32(sc >> 4u));
    }
    return o;
}
