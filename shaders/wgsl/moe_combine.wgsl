// Mixture-of-experts output: x[t, i] += sum over slots j of weight[t, j] * y[t n_used + j, i],
// the chosen experts' down projections (f32) weighted by the router (moe_route.wgsl),
// added into the residual stream. Workgroup y = token.
#include "common/step.wgsl"

struct Params {
    n: u32,
    n_used: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> routes: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = gid.x;
    let t = wid.y;
    if (i >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var j = 0u; j < p.n_used; j++) {
        let slot = t * p.n_used + j;
        acc += bitcast<f32>(routes[2u * slot + 1u]) * y[slot * p.n + i];
    }
    x[t * p.n + i] += acc;
}
