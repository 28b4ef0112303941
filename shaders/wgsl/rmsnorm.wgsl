// RMSNorm: y[r, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight, from f32 rows.
// OUT = act: into activations (the residual stream's pre-norms); OUT = f32_add: added
// into an f32 buffer (post-norms: a block's output, normalised, joins the residual
// stream). One workgroup per output row. With `listed` = 1 in the parameters, output row
// r normalises token step_meta[rows + r] (the tokens whose logits the step wants);
// otherwise row r is token r.
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/reduce.wgsl"

struct Params {
    n: u32,
    eps: f32,
    // 1: the rows listed in the step metadata.
    listed: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
#if OUT == f32_add
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(4) var<storage, read_write> y: array<act>;
#endif
@group(0) @binding(5) var<storage, read> step_meta: array<u32>;

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
    let out_row = wid.x;
    var row = out_row;
    if (p.listed != 0u) {
        row = step_meta[step.rows + out_row];
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
#if OUT == f32_add
        y[yb + i] += x[xb + i] * inv * weight[i];
#else
        y[yb + i] = act(x[xb + i] * inv * weight[i]);
#endif
    }
}
