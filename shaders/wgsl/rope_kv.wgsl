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

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.y;
    let pos = token_pos(t);
    let entry = entry_info(token_entry(t));
    let half = p.head_dim / 2u;
    let n_q = p.n_head * half;
    let n_k = p.n_kv_head * half;
    let i = gid.x;
    let tb = t * p.qkv_stride;
    let cache_b = kv_slot(entry.x, pos) * p.kv_stride;
    if (i < n_q + n_k) {
        let is_k = i >= n_q;
        let j = select(i, i - n_q, is_k);
        let head = j / half;
        let pair = j % half;
        var src = tb + head * p.head_dim + 2u * pair;
        if (is_k) {
            src += p.n_head * p.head_dim;
        }
        var a = f32(qkv[src]);
        var b = f32(qkv[src + 1u]);
        if (2u * pair < p.n_rot) {
            let cs = rotation(f32(pos) * inv_freq[pair]);
            let a2 = a * cs.x - b * cs.y;
            b = a * cs.y + b * cs.x;
            a = a2;
        }
        if (is_k) {
            let dst = cache_b + head * p.head_dim + 2u * pair;
            k_pool[dst] = kv_t(a);
            k_pool[dst + 1u] = kv_t(b);
        } else {
            qkv[src] = act(a);
            qkv[src + 1u] = act(b);
        }
    } else if (i < n_q + 2u * n_k) {
        // Two value elements per invocation.
        let e = 2u * (i - n_q - n_k);
        let src = tb + (p.n_head + p.n_kv_head) * p.head_dim + e;
        v_pool[cache_b + e] = kv_t(f32(qkv[src]));
        v_pool[cache_b + e + 1u] = kv_t(f32(qkv[src + 1u]));
    }
}
