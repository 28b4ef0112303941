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
fn nibbles_lo(q: u32) -> vec4<f32> {
    return vec4<f32>(f32(q & 15u), f32((q >> 8u) & 15u), f32((q >> 16u) & 15u), f32((q >> 24u) & 15u));
}

fn nibbles_hi(q: u32) -> vec4<f32> {
    return vec4<f32>(f32((q >> 4u) & 15u), f32((q >> 12u) & 15u), f32((q >> 20u) & 15u), f32(q >> 28u));
}

// The four signed bytes of a word, as floats.
fn bytes_i8(q: u32) -> vec4<f32> {
    let s = bitcast<i32>(q);
    return vec4<f32>(f32(extractBits(s, 0u, 8u)), f32(extractBits(s, 8u, 8u)),
                     f32(extractBits(s, 16u, 8u)), f32(extractBits(s, 24u, 8u)));
}
