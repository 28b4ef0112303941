// The gate of a gated feed-forward network: h[t, i] = gate(g[t, i]) * u[t, i], where the
// fused gate/up projection wrote g and u side by side: gu[t, :] = [g | u].
// GATE: the nonlinearity (common/gate.wgsl). A token has `per_token` rows (1; a mixture
// of experts has one per chosen expert). Workgroup y = row within the token, z = token.
#include "common/act.wgsl"
#include "common/step.wgsl"
#define GATE_T f32
#include "common/gate.wgsl"

struct Params {
    // Elements of h per row.
    n: u32,
    per_token: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> gu: array<act>;
@group(0) @binding(3) var<storage, read_write> h: array<act>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = gid.x;
    let t = wid.z * p.per_token + wid.y;
    if (i >= p.n) {
        return;
    }
    let g = f32(gu[t * 2u * p.n + i]);
    let u = f32(gu[t * 2u * p.n + p.n + i]);
    h[t * p.n + i] = act(gate(g) * u);
}
