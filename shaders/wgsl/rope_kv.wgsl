// Rotary position embedding on the step's queries and keys, and the keys and values
// written into the paged KV cache.
//
// qkv holds, per token, the query heads, then the key heads, then the value heads
// (what the fused QKV projection writes). Pairs (2i, 2i+1) of each head rotate by
// pos * inv_freq[i] (llama.cpp's "normal" RoPE; GGUF llama files store Q and K rows
// permuted for it). inv_freq comes from the CPU in f64 precision. Dimensions past
// n_rot are not rotated. Each token's position and pool slot come from the step's
// metadata (common/paged.wgsl).
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
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> qkv: array<act>;
@group(0) @binding(3) var<storage, read_write> k_pool: array<kv_t>;
@group(0) @binding(4) var<storage, read_write> v_pool: array<kv_t>;
@group(0) @binding(5) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(6) var<storage, read> step_meta: array<u32>;

#include "common/paged.wgsl"

// Cosine and sine of a possibly large angle: reduce it to [-pi, pi] first, where GPU
// trigonometry is accurate.
fn rotation(theta: f32) -> vec2<f32> {
    let two_pi = 6.283185307179586;
    let r = theta - two_pi * round(theta / two_pi);
    return vec2<f32>(cos(r), sin(r));
}

// Rotates the pair at (a, b) of a query or key at position pos, pair index `pair`.
fn rotate(a: f32, b: f32, pos: u32, pair: u32) -> vec2<f32> {
    if (2u * pair >= p.n_rot) {
        return vec2<f32>(a, b);
    }
    let cs = rotation(f32(pos) * inv_freq[pair]);
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

#if KV == q8_0
// Quantizes 32 values into a slot's quants and scale (common/kv_access.wgsl): d is
// amax / 127 as in GGML's Q8_0, stored rounded to f16; values round half away from zero.
fn store_q8(values: ptr<function, array<f32, 32>>, slot: u32, first: u32, is_k: bool) {
    var amax = 0.0;
    for (var i = 0u; i < 32u; i++) {
        amax = max(amax, abs((*values)[i]));
    }
    let d = amax / 127.0;
    let id = select(0.0, 1.0 / d, d > 0.0);
    let words = p.kv_stride / 4u + p.kv_stride / 32u;
    let b = slot * words;
    for (var w4 = 0u; w4 < 8u; w4++) {
        var packed = 0u;
        for (var k = 0u; k < 4u; k++) {
            let x = (*values)[4u * w4 + k] * id;
            let q = i32(trunc(x + 0.5 * sign(x)));
            packed |= (bitcast<u32>(q) & 0xffu) << (8u * k);
        }
        let at = b + first / 4u + w4;
        if (is_k) { k_pool[at] = packed; } else { v_pool[at] = packed; }
    }
    let scale = bitcast<u32>(unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x);
    let at = b + p.kv_stride / 4u + first / 32u;
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
    let k_base = tb + p.n_head * p.head_dim;
    let v_base = tb + (p.n_head + p.n_kv_head) * p.head_dim;
    if (i < n_q) {
        // A query pair, rotated in place.
        let src = tb + (i / half) * p.head_dim + 2u * (i % half);
        let r = rotate(f32(qkv[src]), f32(qkv[src + 1u]), pos, i % half);
        qkv[src] = act(r.x);
        qkv[src + 1u] = act(r.y);
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
    for (var e = 0u; e < 32u; e += 2u) {
        let at = first + e;
        if (is_k) {
            let r = rotate(f32(qkv[k_base + at]), f32(qkv[k_base + at + 1u]), pos, (at % p.head_dim) / 2u);
            values[e] = r.x;
            values[e + 1u] = r.y;
        } else {
            values[e] = f32(qkv[v_base + at]);
            values[e + 1u] = f32(qkv[v_base + at + 1u]);
        }
    }
    store_q8(&values, slot, first, is_k);
#else
    // One invocation per key pair (rotated), then per two values.
    let n_k = p.n_kv_head * half;
    let j = i - n_q;
    let cache_b = slot * p.kv_stride;
    if (j < n_k) {
        let at = (j / half) * p.head_dim + 2u * (j % half);
        let r = rotate(f32(qkv[k_base + at]), f32(qkv[k_base + at + 1u]), pos, j % half);
        k_pool[cache_b + at] = kv_t(r.x);
        k_pool[cache_b + at + 1u] = kv_t(r.y);
    } else if (j < 2u * n_k) {
        let e = 2u * (j - n_k);
        v_pool[cache_b + e] = kv_t(f32(qkv[v_base + e]));
        v_pool[cache_b + e + 1u] = kv_t(f32(qkv[v_base + e + 1u]));
    }
#endif
}
