// F16: IEEE half floats; a 32-element chunk is 64 bytes (16 words, two per vec4).
#include "quant/dot_from_dq32.wgsl"

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let base = (row >> 2u) + c * 16u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let j = base + 2u * i;
        o[i] = vec4<f32>(unpack2x16float(w[j]), unpack2x16float(w[j + 1u]));
    }
    return o;
}
