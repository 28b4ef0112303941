// Q5_1: 24-byte blocks of 32: f16 scale d, f16 minimum m, 32 high bits qh, then 16 bytes
// of low nibbles laid out as in Q5_0; value = d * q + m. Blocks are word-aligned.
#include "quant/dot_from_dq32.wgsl"

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 24u;
    let dm = unpack2x16float(w[b >> 2u]);
    let qh = w[(b >> 2u) + 1u];
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let q = w[(b >> 2u) + 2u + k];
        let h_lo = bits4(qh >> (4u * k));
        let h_hi = bits4(qh >> (16u + 4u * k));
        o[k] = dm.x * (nibbles_lo(q) + 16.0 * h_lo) + dm.y;
        o[k + 4u] = dm.x * (nibbles_hi(q) + 16.0 * h_hi) + dm.y;
    }
    return o;
}
