// Reading the KV pools (`k_pool`, `v_pool`: array<kv_t>) whatever their storage type.
// Needs `p.kv_stride` (values per position) and common/bits.wgsl.
// Positions are pool slots; `d` counts values within a slot (a multiple of 4 for the
// vec4 readers).
//
// KV = q8_0 stores a slot as its kv_stride values quantized to signed bytes, four to a
// word, followed by one f32 scale per 32 values holding an f16-rounded amax / 127 (the
// arithmetic of GGML's Q8_0, laid out so every access is a whole word).

#if KV == q8_0
fn kv_slot_words() -> u32 {
    return p.kv_stride / 4u + p.kv_stride / 32u;
}

fn k4(slot: u32, d: u32) -> vec4<f32> {
    let b = slot * kv_slot_words();
    return bytes_i8(k_pool[b + d / 4u]) * bitcast<f32>(k_pool[b + p.kv_stride / 4u + d / 32u]);
}

fn v4(slot: u32, d: u32) -> vec4<f32> {
    let b = slot * kv_slot_words();
    return bytes_i8(v_pool[b + d / 4u]) * bitcast<f32>(v_pool[b + p.kv_stride / 4u + d / 32u]);
}

fn v1(slot: u32, d: u32) -> f32 {
    let b = slot * kv_slot_words();
    let q = extractBits(bitcast<i32>(v_pool[b + d / 4u]), (d & 3u) * 8u, 8u);
    return f32(q) * bitcast<f32>(v_pool[b + p.kv_stride / 4u + d / 32u]);
}
#else
fn k4(slot: u32, d: u32) -> vec4<f32> {
    let b = slot * p.kv_stride + d;
    return vec4<f32>(f32(k_pool[b]), f32(k_pool[b + 1u]), f32(k_pool[b + 2u]), f32(k_pool[b + 3u]));
}

fn v4(slot: u32, d: u32) -> vec4<f32> {
    let b = slot * p.kv_stride + d;
    return vec4<f32>(f32(v_pool[b]), f32(v_pool[b + 1u]), f32(v_pool[b + 2u]), f32(v_pool[b + 3u]));
}

fn v1(slot: u32, d: u32) -> f32 {
    return f32(v_pool[slot * p.kv_stride + d]);
}
#endif
