// Byte access to GGUF blocks stored unchanged in `w: array<u32>` (declared by the kernel).
// Blocks of 18 or 34 bytes are only 2-byte aligned, so a 32-bit field may straddle two
// words; every block starts at an even byte, which these helpers rely on.

fn w_u16(byte: u32) -> u32 {
    return (w[byte >> 2u] >> ((byte & 2u) << 3u)) & 0xffffu;
}

// Four bytes starting at an even byte offset.
fn w_u32(byte: u32) -> u32 {
    let i = byte >> 2u;
    if ((byte & 2u) == 0u) {
        return w[i];
    }
    return (w[i] >> 16u) | (w[i + 1u] << 16u);
}

fn w_f16(byte: u32) -> f32 {
    return unpack2x16float(w_u16(byte)).x;
}

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

// The four signed bytes of a word, as floats.
fn bytes_i8(q: u32) -> vec4<f32> {
    let s = bitcast<i32>(q);
    return vec4<f32>(f32(extractBits(s, 0u, 8u)), f32(extractBits(s, 8u, 8u)),
                     f32(extractBits(s, 16u, 8u)), f32(extractBits(s, 24u, 8u)));
}
