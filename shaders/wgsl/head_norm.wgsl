// QK-norm: RMSNorm of every query head and key head of the step, in place in qkv,
// before RoPE (Gemma 3). Query heads use the first head_dim weights, key heads the
// next head_dim. With `has_bias`, bias[c] is added to column c first: a QKV bias comes
// before the norm (as in Hugging Face's models with both), and rope_kv then adds only
// the values' part. One workgroup per (head, token): workgroup x = head among the
// n_head query heads then the n_kv_head key heads, y = token.
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/reduce.wgsl"

struct Params {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    // Elements per token in qkv.
    qkv_stride: u32,
    eps: f32,
    // 1: add bias[] to the query and key heads before normalising.
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> qkv: array<act>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// Dimension i of the head whose first column in the token's row is `col0`, with the bias.
fn biased(base: u32, col0: u32, i: u32) -> f32 {
    var v = f32(qkv[base + i]);
    if (p.has_bias != 0u) {
        v += bias[col0 + i];
    }
    return v;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
#if REDUCE == subgroup
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
) {
#if REDUCE == subgroup
    reduce_init(lid, sg_id, n_sg, sg_lane);
#else
    reduce_init(lid);
#endif
    let head = wid.x;
    let t = wid.y;
    // Query and key heads lie one after another at the start of each token's row.
    let col0 = head * p.head_dim;
    let base = t * p.qkv_stride + col0;
    let w = select(0u, p.head_dim, head >= p.n_head);
    var ss = 0.0;
    for (var i = lid; i < p.head_dim; i += WG) {
        let v = biased(base, col0, i);
        ss += v * v;
    }
    let inv = inverseSqrt(wg_sum(ss) / f32(p.head_dim) + p.eps);
    for (var i = lid; i < p.head_dim; i += WG) {
        qkv[base + i] = act(biased(base, col0, i) * inv * weight[w + i]);
    }
}
