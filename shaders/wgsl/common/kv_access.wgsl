// The KV pools (`k_pool`, `v_pool`: array<kv_t>) whatever their storage type: where a
// slot's values live and how they are packed, for the writer (rope_kv.wgsl) and the
// readers (the attention kernels) alike, so the two cannot disagree.
// Needs `p.kv_stride` (values per position).
// Positions are pool slots; `d` counts values within a slot (a multiple of 4 for the
// vec4 readers).
//
// KV = q8_0 stores a slot as kv_stride / 32 blocks in a row, each 32 values quantized to
// signed bytes with one scale (the arithmetic of GGML's Q8_0), laid out so every access is
// a whole word. The Rust side is `kernels::Q8KvBlock`; the reflection test compares the two.
struct Q8KvBlock {
    // Signed bytes, four to a word, the first value in the low byte.
    quants: array<u32, 8>,
    // The block's f16-rounded amax / 127, stored as an f32.
    scale: f32,
}
const Q8_KV_BLOCK_WORDS: u32 = 9u;

#if KV == q8_0
#include "common/bits.wgsl"

fn kv_slot_words() -> u32 {
    return p.kv_stride / 32u * Q8_KV_BLOCK_WORDS;
}

// The first pool word of the block holding value d of a slot.
fn kv_block_word(slot: u32, d: u32) -> u32 {
    return slot * kv_slot_words() + d / 32u * Q8_KV_BLOCK_WORDS;
}

// The pool word holding values d - d % 4 .. d - d % 4 + 3 of a slot (Q8KvBlock.quants).
fn kv_quant_word(slot: u32, d: u32) -> u32 {
    return kv_block_word(slot, d) + (d % 32u) / 4u;
}

// The pool word holding the scale of the 32 values that value d belongs to
// (Q8KvBlock.scale).
fn kv_scale_word(slot: u32, d: u32) -> u32 {
    return kv_block_word(slot, d) + 8u;
}

// Four values from their quant word and their block's scale word.
fn q8_unpack4(quants: u32, scale: u32) -> vec4<f32> {
    return bytes_i8(quants) * bitcast<f32>(scale);
}

// Value d % 4 of a quant word, with its block's scale word.
fn q8_unpack1(quants: u32, scale: u32, d: u32) -> f32 {
    let q = extractBits(bitcast<i32>(quants), (d & 3u) * 8u, 8u);
    return f32(q) * bitcast<f32>(scale);
}

// A block's scale as GGML's Q8_0 computes it from the block's largest magnitude: the
// quants are computed with it, the stored word holds it rounded to f16.
fn q8_scale(amax: f32) -> f32 {
    return amax / 127.0;
}

// The scale word stored for a block whose scale is `d`.
fn q8_scale_bits(d: f32) -> u32 {
    return bitcast<u32>(unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x);
}

// Four values quantized with scale `d` (rounded half away from zero, an all-zero block
// to zeros) and packed into one quant word, the first value in the low byte.
fn q8_pack4(values: vec4<f32>, d: f32) -> u32 {
    let id = select(0.0, 1.0 / d, d > 0.0);
    var packed = 0u;
    for (var k = 0u; k < 4u; k++) {
        let x = values[k] * id;
        let q = i32(trunc(x + 0.5 * sign(x)));
        packed |= (bitcast<u32>(q) & 0xffu) << (8u * k);
    }
    return packed;
}

fn k4(slot: u32, d: u32) -> vec4<f32> {
    return q8_unpack4(k_pool[kv_quant_word(slot, d)], k_pool[kv_scale_word(slot, d)]);
}

fn v4(slot: u32, d: u32) -> vec4<f32> {
    return q8_unpack4(v_pool[kv_quant_word(slot, d)], v_pool[kv_scale_word(slot, d)]);
}

fn v1(slot: u32, d: u32) -> f32 {
    return q8_unpack1(v_pool[kv_quant_word(slot, d)], v_pool[kv_scale_word(slot, d)], d);
}
#else
// The pool element holding value d of a slot.
fn kv_index(slot: u32, d: u32) -> u32 {
    return slot * p.kv_stride + d;
}

fn k4(slot: u32, d: u32) -> vec4<f32> {
    let b = kv_index(slot, d);
    return vec4<f32>(f32(k_pool[b]), f32(k_pool[b + 1u]), f32(k_pool[b + 2u]), f32(k_pool[b + 3u]));
}

fn v4(slot: u32, d: u32) -> vec4<f32> {
    let b = kv_index(slot, d);
    return vec4<f32>(f32(v_pool[b]), f32(v_pool[b + 1u]), f32(v_pool[b + 2u]), f32(v_pool[b + 3u]));
}

fn v1(slot: u32, d: u32) -> f32 {
    return f32(v_pool[kv_index(slot, d)]);
}
#endif
