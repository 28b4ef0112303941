// RMSNorm: y[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight, from the f32
// residual stream into activations. One workgroup per token. LAST = 1 normalises only
// the step's last token into row 0 (what the LM head needs after a prefill).
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/reduce.wgsl"

struct Params {
    n: u32,
    eps: f32,
    last: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<act>;

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
    var row = wid.x;
    var out_row = wid.x;
    if (p.last != 0u) {
        row = step.n_tokens - 1u;
        out_row = 0u;
    }
    let xb = row * p.n;
    var ss = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = x[xb + i];
        ss += v * v;
    }
    let inv = inverseSqrt(wg_sum(ss) / f32(p.n) + p.eps);
    let yb = out_row * p.n;
    for (var i = lid; i < p.n; i += WG) {
        y[yb + i] = act(x[xb + i] * inv * weight[i]);
    }
}
