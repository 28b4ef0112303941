// Matrix-vector product for decoding: y[t, out_offset + n] (+)= W[n, :] . x[t, :]
// with W in its GGUF block format, dequantized here.
//
// SPLIT lanes share one group of ROWS rows and split its 32-element chunks between them
// (then reduce: REDUCE = subgroup | workgroup); SPLIT = 1 gives each lane whole rows
// with no reduction at all, which suits CPU-like adapters where lanes are SIMD slots.
// ROWS > 1 reuses each activation load for several rows. Workgroup z is a block of TB
// tokens: with TB > 1 (small decode batches) each lane dequantizes a chunk of each row
// once and takes it through the block's tokens, whose activations it loads once per
// chunk for all its rows.
#include "common/product.wgsl"
#if SPLIT > 1
#include "common/reduce.wgsl"
#endif

const GROUPS: u32 = WG / SPLIT;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if SPLIT > 1 && REDUCE == subgroup
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
) {
#if SPLIT > 1 && REDUCE == subgroup
    reduce_init(lid, sg_id, n_sg, sg_lane);
#elif SPLIT > 1
    reduce_init(lid);
#endif
    let lane = lid % SPLIT;
    let row0 = (linear_workgroup(wid, nwg) * GROUPS + lid / SPLIT) * ROWS;
    let t0 = wid.z * TB;
    var xbase: array<u32, TB>;
    for (var j = 0u; j < TB; j++) {
        xbase[j] = min(t0 + j, x_rows() - 1u) * p.x_stride;
    }
    // Rows past the end compute on the last row and are not written, so every lane
    // stays in uniform control flow for the reduction.
    var rows: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        rows[r] = min(row0 + r, p.n - 1u) * p.row_bytes;
    }
    var acc: array<array<f32, TB>, ROWS>;
    let chunks = p.k / 32u;
#if SPLIT > 1
    let first = lane;
#else
    // Spelled out so the compiler sees the activation loads are the same for every lane
    // (one scalar load broadcast, not a gather per lane on CPU adapters).
    let first = 0u;
#endif
    for (var c = first; c < chunks; c += SPLIT) {
#if TB == 1
        var xs: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            xs[i] = vec4<f32>(x[xbase[0] + c * 8u + i]);
        }
        for (var r = 0u; r < ROWS; r++) {
            acc[r][0] += dot32(rows[r], c, xs);
        }
#else
        var xs: array<array<vec4<f32>, 8>, TB>;
        for (var j = 0u; j < TB; j++) {
            for (var i = 0u; i < 8u; i++) {
                xs[j][i] = vec4<f32>(x[xbase[j] + c * 8u + i]);
            }
        }
        for (var r = 0u; r < ROWS; r++) {
            let wq = dq32(rows[r], c);
            for (var j = 0u; j < TB; j++) {
                var s = vec4<f32>(0.0);
                for (var i = 0u; i < 8u; i++) {
                    s = fma(wq[i], xs[j][i], s);
                }
                acc[r][j] += dot(s, vec4<f32>(1.0));
            }
        }
#endif
    }
    for (var r = 0u; r < ROWS; r++) {
        for (var j = 0u; j < TB; j++) {
#if SPLIT > 1
            let s = group_sum(acc[r][j]);
#else
            let s = acc[r][j];
#endif
            if (lane == 0u && row0 + r < p.n && t0 + j < x_rows()) {
                let o = (t0 + j) * p.y_stride + p.out_offset + row0 + r;
                store_product(o, s);
            }
        }
    }
}
