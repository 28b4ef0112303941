// Q5_0: 22-byte blocks of 32: f16 scale d, 32 high bits qh (bit j for element j), then
// 16 bytes of low nibbles (element j < 16 in the low nibble of byte j, 16 + j in its
// high nibble); value = d * (q - 16). Blocks are 2-byte aligned.
#include "quant/dot_from_dq32.wgsl"

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 22u;
    let d = w_f16(b);
    let qh = w_u32(b + 2u);
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let q = w_u32(b + 6u + 4u * k);
        let h_lo = bits4(qh >> (4u * k));
        let h_hi = bits4(qh >> (16u + 4u * k));
        o[k] = d * (nibbles_lo(q) + 16.0 * h_lo - 16.0);
        o[k + 4u] = d * (nibbles_hi(q) + 16.0 * h_hi - 16.0);
    }
    return o;
}
