// IQ4_NL: 18-byte blocks of 32 laid out as Q4_0 (f16 scale d, 16 bytes of nibbles), but
// each nibble indexes a non-uniform grid of 16 levels, denser near zero:
// value = d * IQ4_NL_GRID[q]. Blocks are 2-byte aligned.
#include "quant/dot_from_dq32.wgsl"

const IQ4_NL_GRID = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                   1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

fn iq4_levels(q: u32, shift: u32) -> vec4<f32> {
    let n = (vec4<u32>(q) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(15u);
    return vec4<f32>(IQ4_NL_GRID[n.x], IQ4_NL_GRID[n.y], IQ4_NL_GRID[n.z], IQ4_NL_GRID[n.w]);
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let b = row + c * 18u;
    let d = w_f16(b);
    var o: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let q = w_u32(b + 2u + 4u * k);
        o[k] = d * iq4_levels(q, 0u);
        o[k + 4u] = d * iq4_levels(q, 4u);
    }
    return o;
}
