// BF16: the top halves of f32s; a 32-element chunk is 64 bytes (16 words, two per vec4).
#include "quant/dot_from_dq32.wgsl"

fn bf16_pair(u: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
}

fn dq32(row: u32, c: u32) -> array<vec4<f32>, 8> {
    let base = (row >> 2u) + c * 16u;
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
        let j = base + 2u * i;
        o[i] = vec4<f32>(bf16_pair(w[j]), bf16_pair(w[j + 1u]));
    }
    return o;
}
