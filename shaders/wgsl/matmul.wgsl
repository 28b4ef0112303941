// Matrix-matrix product for prefill: y[t, out_offset + n] (+)= W[n, :] . x[t, :] for
// all tokens of the step, W in its GGUF block format, dequantized here.
//
// Register-blocked: each lane computes RN rows for RT tokens, so each dequantized
// chunk is used RT times and each activation load RN times. Lanes of a workgroup take
// neighbouring rows for the same tokens; there are no barriers and no workgroup memory,
// which suits CPU-like adapters. Workgroup y is the token block.
#include "common/product.wgsl"

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row0 = (linear_workgroup(wid, nwg) * WG + lid) * RN;
    let t0 = wid.z * RT;
    let n_tokens = x_rows();
    var rows: array<u32, RN>;
    for (var r = 0u; r < RN; r++) {
        rows[r] = min(row0 + r, p.n - 1u) * p.row_bytes;
    }
    var xrows: array<u32, RT>;
    for (var t = 0u; t < RT; t++) {
        xrows[t] = min(t0 + t, n_tokens - 1u) * p.x_stride;
    }
    var acc: array<array<f32, RT>, RN>;
    let chunks = p.k / 32u;
    for (var c = 0u; c < chunks; c++) {
        for (var r = 0u; r < RN; r++) {
            let wq = dq32(rows[r], c);
            for (var t = 0u; t < RT; t++) {
                let xb = xrows[t] + c * 8u;
                var s = 0.0;
                for (var i = 0u; i < 8u; i++) {
                    s += dot(wq[i], vec4<f32>(x[xb + i]));
                }
                acc[r][t] += s;
            }
        }
    }
    for (var r = 0u; r < RN; r++) {
        for (var t = 0u; t < RT; t++) {
            if (row0 + r < p.n && t0 + t < n_tokens) {
                let o = (t0 + t) * p.y_stride + p.out_offset + row0 + r;
                store_product(o, acc[r][t]);
            }
        }
    }
}
