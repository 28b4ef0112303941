// Unpacking small integers packed in words, as floats.

// The four low nibbles and the four high nibbles of a word, as floats.
// Conversions go through i32: CPUs without AVX-512 have no unsigned-to-float instruction.
fn nibbles_lo(q: u32) -> vec4<f32> {
    let s = bitcast<i32>(q);
    return vec4<f32>(vec4<i32>(s & 15, (s >> 8u) & 15, (s >> 16u) & 15, (s >> 24u) & 15));
}

fn nibbles_hi(q: u32) -> vec4<f32> {
    let s = bitcast<i32>(q);
    return vec4<f32>(vec4<i32>((s >> 4u) & 15, (s >> 12u) & 15, (s >> 20u) & 15, (s >> 28u) & 15));
}

// The four signed bytes of a word, as floats (shift left then arithmetic right to
// sign-extend each byte).
fn bytes_i8(q: u32) -> vec4<f32> {
    let s = bitcast<i32>(q);
    return vec4<f32>(vec4<i32>(s << 24u, s << 16u, s << 8u, s) >> vec4<u32>(24u));
}

// Bits `shift ..` of each of the four bytes of a word, under `mask`, as floats.
fn byte_fields(q: u32, shift: u32, mask: u32) -> vec4<f32> {
    let s = vec4<i32>(bitcast<i32>(q)) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u);
    return vec4<f32>(s & vec4<i32>(i32(mask)));
}

// Bits 0, 1, 2 and 3 of a word, as floats.
fn bits4(x: u32) -> vec4<f32> {
    return vec4<f32>((vec4<i32>(bitcast<i32>(x)) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<i32>(1));
}
