// Rotary position embedding on the step's queries and keys, and the keys and values
// written into the paged KV cache.
//
// qkv holds, per token, the query heads, then the key heads, then the value heads
// (what the fused QKV projection writes). bias[c] is added to every column c from
// `bias_start` on first (qwen2's QKV bias; from the values on when head_norm has added
// the query and key parts before normalising them). Each head rotates pair j by pos * inv_freq[j]; which two
// dimensions form pair j depends on the style (`neox`):
// - 0, llama.cpp's "normal" RoPE: (2j, 2j+1) (GGUF llama files store Q and K rows
//   permuted for it);
// - 1, "NEOX" RoPE: (j, j + n_rot/2) (qwen2, gemma3).
// inv_freq comes from the CPU in f64 precision. Dimensions past n_rot are not rotated.
// Each token's position and pool slot come from the step's metadata
// (common/paged.wgsl).
// Workgroup y = token; x covers the query rotations, the key rotations and the value copies.
#include "common/act.wgsl"
#include "common/step.wgsl"

struct Params {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    n_rot: u32,
    // Elements per token in qkv.
    qkv_stride: u32,
    // Elements per position in each cache (n_kv_head * head_dim).
    kv_stride: u32,
    // 1: pairs (j, j + n_rot/2); 0: pairs (2j, 2j+1).
    neox: u32,
    // The first column bias[] is added to (qkv_stride: none).
    bias_start: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> qkv: array<act>;
@group(0) @binding(3) var<storage, read_write> k_pool: array<kv_t>;
@group(0) @binding(4) var<storage, read_write> v_pool: array<kv_t>;
@group(0) @binding(5) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(6) var<storage, read> step_meta: array<u32>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

#include "common/paged.wgsl"
#include "common/kv_access.wgsl"

// Cosine and sine of a possibly large angle: reduce it to [-pi, pi] first, where GPU
// trigonometry is accurate.
fn rotation(theta: f32) -> vec2<f32> {
    let two_pi = 6.283185307179586;
    let r = theta - two_pi * round(theta / two_pi);
    return vec2<f32>(cos(r), sin(r));
}

// Column `col` of token row `row` (the start of its qkv row), with the bias.
fn qkv_at(row: u32, col: u32) -> f32 {
    var v = f32(qkv[row + col]);
    if (col >= p.bias_start) {
        v += bias[col];
    }
    return v;
}

// The two dimensions of a head that rotate together as pair j. Pairs past n_rot / 2
// (not rotated) cover the remaining dimensions two by two in either style.
fn pair_dims(j: u32) -> vec2<u32> {
    let h = p.n_rot / 2u;
    if (p.neox != 0u && j < h) {
        return vec2<u32>(j, j + h);
    }
    return vec2<u32>(2u * j, 2u * j + 1u);
}

// Rotates pair j of the head whose first column in the token row is `head_col`: the
// rotated values of its two dimensions.
fn rotate_pair(row: u32, head_col: u32, j: u32, pos: u32) -> vec2<f32> {
    let d = pair_dims(j);
    let a = qkv_at(row, head_col + d.x);
    let b = qkv_at(row, head_col + d.y);
    if (2u * j >= p.n_rot) {
        return vec2<f32>(a, b);
    }
    let cs = rotation(f32(pos) * inv_freq[j]);
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

// The pair a head dimension belongs to, and whether it is the pair's first dimension.
fn pair_of(dim: u32) -> vec2<u32> {
    let h = p.n_rot / 2u;
    if (p.neox != 0u && dim < p.n_rot) {
        return vec2<u32>(dim % h, u32(dim < h));
    }
    return vec2<u32>(dim / 2u, u32(dim % 2u == 0u));
}

#if KV == q8_0
// Quantizes 32 values into a slot's quants and scale (packed by common/kv_access.wgsl).
fn store_q8(values: ptr<function, array<f32, 32>>, slot: u32, first: u32, is_k: bool) {
    var amax = 0.0;
    for (var i = 0u; i < 32u; i++) {
        amax = max(amax, abs((*values)[i]));
    }
    let d = q8_scale(amax);
    for (var w4 = 0u; w4 < 8u; w4++) {
        let e = 4u * w4;
        let four = vec4<f32>((*values)[e], (*values)[e + 1u], (*values)[e + 2u], (*values)[e + 3u]);
        let packed = q8_pack4(four, d);
        let at = kv_quant_word(slot, first + e);
        if (is_k) { k_pool[at] = packed; } else { v_pool[at] = packed; }
    }
    let scale = q8_scale_bits(d);
    let at = kv_scale_word(slot, first);
    if (is_k) { k_pool[at] = scale; } else { v_pool[at] = scale; }
}
#endif

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.y;
    let pos = token_pos(t);
    let entry = entry_info(token_entry(t));
    let half = p.head_dim / 2u;
    let n_q = p.n_head * half;
    let i = gid.x;
    let tb = t * p.qkv_stride;
    let slot = kv_slot(entry.x, pos);
    if (i < n_q) {
        // A query pair, rotated in place (its bias added).
        let head_col = (i / half) * p.head_dim;
        let j = i % half;
        let r = rotate_pair(tb, head_col, j, pos);
        let d = pair_dims(j);
        qkv[tb + head_col + d.x] = act(r.x);
        qkv[tb + head_col + d.y] = act(r.y);
        return;
    }
#if KV == q8_0
    // One invocation per 32-value block of the keys, then of the values.
    let n_blocks = p.kv_stride / 32u;
    let blk = i - n_q;
    if (blk >= 2u * n_blocks) {
        return;
    }
    let is_k = blk < n_blocks;
    let first = 32u * select(blk - n_blocks, blk, is_k);
    var values: array<f32, 32>;
    let k_col = p.n_head * p.head_dim;
    let v_col = k_col + p.n_kv_head * p.head_dim;
    for (var e = 0u; e < 32u; e++) {
        let at = first + e;
        if (is_k) {
            // A block need not hold both dimensions of a pair (NEOX): rotate the pair
            // and keep this dimension's half.
            let head_col = k_col + (at / p.head_dim) * p.head_dim;
            let pf = pair_of(at % p.head_dim);
            let r = rotate_pair(tb, head_col, pf.x, pos);
            values[e] = select(r.y, r.x, pf.y == 1u);
        } else {
            values[e] = qkv_at(tb, v_col + at);
        }
    }
    store_q8(&values, slot, first, is_k);
#else
    // One invocation per key pair (rotated), then per two values.
    let n_k = p.n_kv_head * half;
    let j = i - n_q;
    if (j < n_k) {
        let head = (j / half) * p.head_dim;
        let r = rotate_pair(tb, p.n_head * p.head_dim + head, j % half, pos);
        let d = pair_dims(j % half);
        k_pool[kv_index(slot, head + d.x)] = kv_t(r.x);
        k_pool[kv_index(slot, head + d.y)] = kv_t(r.y);
    } else if (j < 2u * n_k) {
        let e = 2u * (j - n_k);
        let v_col = (p.n_head + p.n_kv_head) * p.head_dim;
        v_pool[kv_index(slot, e)] = kv_t(qkv_at(tb, v_col + e));
        v_pool[kv_index(slot, e + 1u)] = kv_t(qkv_at(tb, v_col + e + 1u));
    }
#endif
}
