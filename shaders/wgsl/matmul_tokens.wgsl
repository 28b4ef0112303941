// Matrix-matrix product for prefill on CPU-like adapters:
// y[t, out_offset + n] (+)= W[n, :] . x[t, :], each lane one token.
//
// On a CPU adapter the lanes of a workgroup are SIMD slots and a load whose address
// differs between lanes costs a scalar load per lane, while a load whose address is the
// same for every lane costs one. Here every lane of the workgroup reads the same weight
// block (one load, broadcast) and its own token's activations, which are loaded once per
// 32-element chunk and reused for RN rows. Workgroup z is the block of WG tokens.
#include "common/product.wgsl"

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = wid.z * WG + lid;
    let xb = min(t, x_rows() - 1u) * p.x_stride;
    let row0 = linear_workgroup(wid, nwg) * RN;
    var acc: array<f32, RN>;
    let chunks = p.k / 32u;
    for (var c = 0u; c < chunks; c++) {
        var xs: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            xs[i] = vec4<f32>(x[xb + c * 8u + i]);
        }
        for (var r = 0u; r < RN; r++) {
            // The same row for every lane: its loads are uniform.
            let row = min(row0 + r, p.n - 1u);
            acc[r] += dot32(row * p.row_bytes, c, xs);
        }
    }
    if (t < x_rows()) {
        for (var r = 0u; r < RN; r++) {
            if (row0 + r < p.n) {
                let o = t * p.y_stride + p.out_offset + row0 + r;
                store_product(o, acc[r]);
            }
        }
    }
}
