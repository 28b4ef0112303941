// F32: plain little-endian floats; a 32-element chunk is 128 bytes.
#include "quant/dot_from_dq32.wgsl"

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let base = (row >> 2u) + c * 32u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let j = base + 4u * i;
        o[i] = vec4<f32>(bitcast<f32>(w[j]), bitcast<f32>(w[j + 1u]), bitcast<f32>(w[j + 2u]), bitcast<f32>(w[j + 3u]));
    }
    return o;
}
