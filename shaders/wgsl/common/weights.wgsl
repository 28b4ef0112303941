// Byte access to GGUF blocks stored unchanged in `w: array<u32>` (declared by the kernel).
#include "common/bits.wgsl"

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

// Word k of a run of words that starts at an even byte, from the aligned words `lo`
// and `hi` around it. Branch-free, so lanes whose runs differ in alignment do not
// diverge: `sh` is 0 (aligned) or 16, and the double shift yields 0 when sh is 0.
fn funnel(lo: u32, hi: u32, sh: u32) -> u32 {
    return (lo >> sh) | ((hi << 16u) << (16u - sh));
}

// The byte at any offset.
fn w_u8(byte: u32) -> u32 {
    return (w[byte >> 2u] >> ((byte & 3u) << 3u)) & 0xffu;
}

// The signed byte at any offset, as a float.
fn w_i8(byte: u32) -> f32 {
    return f32(bitcast<i32>(w_u8(byte) << 24u) >> 24u);
}
