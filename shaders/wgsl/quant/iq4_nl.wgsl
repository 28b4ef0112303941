// IQ4_NL: 18-byte blocks of 32 laid out as Q4_0 (f16 scale d, 16 bytes of nibbles), but
// each nibble indexes a non-uniform grid of 16 levels, denser near zero:
// value = d * level(q). Blocks are 2-byte aligned.
#include "quant/dot_from_dq32.wgsl"

// The 16 levels as signed bytes, four to a word (byte n & 3 of word n >> 2), so a level
// is picked with register arithmetic: indexing an array with a runtime value makes naga
// copy the array into memory at every access, 5x slower on lavapipe.
const IQ4_NL_LEVELS = vec4<u32>(0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u);

fn iq4_level(n: u32) -> f32 {
    let word = IQ4_NL_LEVELS[n >> 2u];
    return f32(bitcast<i32>((word >> ((n & 3u) << 3u)) << 24u) >> 24u);
}

fn iq4_levels(q: u32, shift: u32) -> vec4<f32> {
    let n = (vec4<u32>(q) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(15u);
    return vec4<f32>(iq4_level(n.x), iq4_level(n.y), iq4_level(n.z), iq4_level(n.w));
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
