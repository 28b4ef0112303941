// Matrix-matrix product for GPUs (prefill and batched decode):
// y[t, out_offset + n] (+)= W[n, :] . x[t, :], W in its GGUF block format.
//
// A workgroup computes a BM x BN tile of the output (weight rows x tokens). K goes by
// in chunks of 32 (one quant block): BM lanes each dequantize one row's chunk and BN
// lanes each load one token's chunk into workgroup memory, so every weight is
// dequantized once per tile and every activation loaded once; then each lane
// accumulates TM x TN products from workgroup memory. The next chunk is fetched into
// registers while the current one is used, which overlaps global-memory latency with
// the arithmetic. Lane (i, j) owns rows i + m * (BM / TM) and tokens j + n * (BN / TN):
// neighbouring lanes read neighbouring rows, free of bank conflicts.
#include "common/product.wgsl"

// Lanes along the rows, and in all (the registry keeps WG >= BM + BN: one fetch each).
const LM: u32 = BM / TM;
const LN: u32 = BN / TN;
const WG: u32 = LM * LN;

// The current chunk, [element group g][row or token]; group g holds elements 4g..4g+3.
var<workgroup> w_s: array<vec4<f32>, 8 * BM>;
var<workgroup> x_s: array<vec4<f32>, 8 * BN>;

// Chunk c of this lane's weight row (lanes below BM) or token (the next BN lanes).
fn fetch(lid: u32, w_row: u32, x_row: u32, c: u32) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
    if (lid < BM) {
        v = dq32(w_row, c);
    } else if (lid < BM + BN) {
        for (var g = 0u; g < 8u; g++) {
            v[g] = vec4<f32>(x[x_row + c * 8u + g]);
        }
    }
    return v;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row0 = linear_workgroup(wid, nwg) * BM;
    let t0 = wid.z * BN;
    let n_tokens = x_rows();
    let chunks = p.k / 32u;
    // Rows and tokens past the end fetch the last one (finite values, never stored).
    let w_row = min(row0 + lid, p.n - 1u) * p.row_bytes;
    let x_row = min(t0 + max(lid, BM) - BM, n_tokens - 1u) * p.x_stride;
    let li = lid % LM;
    let lj = lid / LM;

    var acc: array<array<f32, TN>, TM>;
    var next = fetch(lid, w_row, x_row, 0u);
    for (var c = 0u; c < chunks; c++) {
        if (lid < BM) {
            for (var g = 0u; g < 8u; g++) {
                w_s[g * BM + lid] = next[g];
            }
        } else if (lid < BM + BN) {
            for (var g = 0u; g < 8u; g++) {
                x_s[g * BN + lid - BM] = next[g];
            }
        }
        workgroupBarrier();
        if (c + 1u < chunks) {
            next = fetch(lid, w_row, x_row, c + 1u);
        }
        for (var g = 0u; g < 8u; g++) {
            var wv: array<vec4<f32>, TM>;
            for (var m = 0u; m < TM; m++) {
                wv[m] = w_s[g * BM + li + m * LM];
            }
            for (var n = 0u; n < TN; n++) {
                let xv = x_s[g * BN + lj + n * LN];
                for (var m = 0u; m < TM; m++) {
                    acc[m][n] += dot(wv[m], xv);
                }
            }
        }
        workgroupBarrier();
    }
    for (var m = 0u; m < TM; m++) {
        for (var n = 0u; n < TN; n++) {
            let row = row0 + li + m * LM;
            let t = t0 + lj + n * LN;
            if (row < p.n && t < n_tokens) {
                store_product(t * p.y_stride + p.out_offset + row, acc[m][n]);
            }
        }
    }
}
