// Matrix-matrix product for prefill on CPU-like adapters:
// y[t, out_offset + n] (+)= W[n, :] . x[t, :], each lane TN tokens.
//
// On a CPU adapter the lanes of a workgroup are SIMD slots and a load whose address
// differs between lanes costs a scalar load per lane, while a load whose address is the
// same for every lane costs one. Here every lane of the workgroup reads the same weight
// block (one load, broadcast) and its own tokens' activations, which are loaded once per
// 32-element chunk and reused for RN rows. Even a broadcast load is dear (a bounds check
// and a branch each on lavapipe), and every lane repeats the same dequantizing, so with
// TN > 1 each lane dequantizes a chunk once into registers and takes it through TN
// tokens: lane l has tokens l, l + WG, ... of its block of WG x TN tokens (workgroup z).
// On lavapipe (8 lanes) TN = 2 ran 16 to 64 tokens 1.6-1.7x faster than TN = 1.
#include "common/product.wgsl"

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t0 = wid.z * WG * TN + lid;
    // Token slots past the last token recompute the last one and are not written.
    var xb: array<u32, TN>;
    for (var j = 0u; j < TN; j++) {
        xb[j] = min(t0 + j * WG, x_rows() - 1u) * p.x_stride;
    }
    let row0 = linear_workgroup(wid, nwg) * RN;
    var acc: array<array<f32, TN>, RN>;
    let chunks = p.k / 32u;
    // A block whose tokens all sit in the first slot (a small decode batch, the tail of
    // a prefill) takes one token per lane through the factored dot product; the branch
    // is the same in every lane.
    if (TN == 1u || x_rows() - wid.z * WG * TN <= WG) {
        for (var c = 0u; c < chunks; c++) {
            var xs: array<vec4<f32>, 8>;
            for (var i = 0u; i < 8u; i++) {
                xs[i] = vec4<f32>(x[xb[0] + c * 8u + i]);
            }
            for (var r = 0u; r < RN; r++) {
                // The same row for every lane: its loads are uniform.
                let row = min(row0 + r, p.n - 1u) * p.row_bytes;
                acc[r][0] += dot32(row, c, &xs);
            }
        }
    } else {
        for (var c = 0u; c < chunks; c++) {
            var xs: array<array<vec4<f32>, 8>, TN>;
            for (var j = 0u; j < TN; j++) {
                for (var i = 0u; i < 8u; i++) {
                    xs[j][i] = vec4<f32>(x[xb[j] + c * 8u + i]);
                }
            }
            for (var r = 0u; r < RN; r++) {
                let row = min(row0 + r, p.n - 1u) * p.row_bytes;
                var wq = dq32(row, c);
                for (var j = 0u; j < TN; j++) {
                    var s = vec4<f32>(0.0);
                    for (var i = 0u; i < 8u; i++) {
                        s = fma(wq[i], xs[j][i], s);
                    }
                    acc[r][j] += dot(s, vec4<f32>(1.0));
                }
            }
        }
    }
    for (var j = 0u; j < TN; j++) {
        let t = t0 + j * WG;
        if (t < x_rows()) {
            for (var r = 0u; r < RN; r++) {
                if (row0 + r < p.n) {
                    let o = t * p.y_stride + p.out_offset + row0 + r;
                    store_product(o, acc[r][j]);
                }
            }
        }
    }
}
