// One expert's matrix-vector products for the token slots routed to it:
// y[r, out_offset + n] = W_e[n, :] . x[xr, :] for every slot r = t n_used + j whose route
// (moe_route.wgsl) names this dispatch's expert, with xr = t (the layer input, shared by
// a token's slots) or r (per-slot input: the down projection). Slots routed elsewhere
// return at once: the engine dispatches once per expert, so each weight matrix stays
// bound as an ordinary buffer (chunked like any other). Each lane computes whole rows.
// Workgroup x (and y, folded) = block of WG rows, z = slot.
#include "common/product.wgsl"

struct Route {
    expert: u32,
    n_used: u32,
    // 1: x has a row per slot; 0: a row per token.
    x_per_slot: u32,
    _pad: u32,
}

@group(0) @binding(5) var<storage, read> route: Route;
@group(0) @binding(6) var<storage, read> routes: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let slot = wid.z;
    if (routes[2u * slot] != route.expert) {
        return;
    }
    let n = linear_workgroup(wid, nwg) * WG + lid;
    if (n >= p.n) {
        return;
    }
    let xr = select(slot / route.n_used, slot, route.x_per_slot != 0u);
    let xbase = xr * p.x_stride;
    let row = n * p.row_bytes;
    var acc = 0.0;
    for (var c = 0u; c < p.k / 32u; c++) {
        var xs: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            xs[i] = vec4<f32>(x[xbase + c * 8u + i]);
        }
        acc += dot32(row, c, &xs);
    }
    store_product(slot * p.y_stride + p.out_offset + n, acc);
}
