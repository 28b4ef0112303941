// Matrix-vector product for decoding: y[t, out_offset + n] (+)= W[n, :] . x'[t, :]
// with W in its GGUF block format, dequantized here.
//
// SPLIT lanes share one group of ROWS rows and split its 32-element chunks between them
// (then reduce: REDUCE = subgroup | workgroup); SPLIT = 1 gives each lane whole rows
// with no reduction at all, which suits CPU-like adapters where lanes are SIMD slots.
// ROWS > 1 reuses each activation load for several rows. Workgroup z is a block of TB
// tokens: with TB > 1 (small decode batches) each lane dequantizes a chunk of each row
// once and takes it through the block's tokens, whose activations it loads once per
// chunk for all its rows. Where a type defines GROUP_CHUNKS (quant/README.md), lanes
// with whole rows (SPLIT = 1) and one token take that many chunks at once.
//
// XIN is the prologue that makes the input x' from what the previous kernel wrote, so
// that no pass of its own (and no dispatch) sits between them:
// - plain: x' = x;
// - rmsnorm: x' = RMSNorm(x) * norm_w, x the f32 residual stream. The norm's scale is
//   the same for every element, so it multiplies the finished dot products; its sum of
//   squares is gathered from the same loads (each lane's chunks, summed over the row's
//   lanes like the dot products);
// - glu_silu, glu_gelu_tanh: x' = gate(g) * u, x = [g | u] (a fused gate/up product's
//   output, 2k wide).
//
// OUT = argmax is the LM head's epilogue for greedy sampling: the logits are never
// written. Each workgroup writes, per token, the largest of its rows' outputs and that
// row (the lowest among equals) as an (index, bits) pair at slot
// (out_offset + first row) / rows per workgroup of its token's y_stride slots;
// argmax.wgsl (FROM = pairs) finishes each token's slots. So a buffer's first row must
// be a multiple of the rows per workgroup.
#if XIN == glu_silu
#define GATE silu
#elif XIN == glu_gelu_tanh
#define GATE gelu_tanh
#endif
#if SPLIT > 1 || OUT == argmax
#define REDUCES
#endif
#include "common/product.wgsl"
#ifdef REDUCES
#include "common/reduce.wgsl"
#endif
#ifdef GATE
#define GATE_T vec4<f32>
#include "common/gate.wgsl"
#endif

// The norm's gain (XIN = rmsnorm; a placeholder in the other variants), a uniform
// binding like x where x is one (a storage read costs a CPU adapter a branch per lane).
#if XIN == rmsnorm && XBIND == uniform
@group(0) @binding(5) var<uniform> norm_w: array<vec4<f32>, 4096>;
#else
@group(0) @binding(5) var<storage, read> norm_w: array<vec4<f32>>;
#endif

const GROUPS: u32 = WG / SPLIT;

// Four inputs x'[i * 4 ..] of the token row at vec4 `base`, made by the prologue.
fn input4(base: u32, i: u32) -> vec4<f32> {
#if XIN == rmsnorm
    return vec4<f32>(x[base + i]) * norm_w[i];
#elif defined(GATE)
    return gate(vec4<f32>(x[base + i])) * vec4<f32>(x[base + p.k / 4u + i]);
#else
    return vec4<f32>(x[base + i]);
#endif
}

// The norm's part of the sum of squares for four raw inputs (0 without a norm).
fn square_sum4(base: u32, i: u32) -> f32 {
#if XIN == rmsnorm
    let v = vec4<f32>(x[base + i]);
    return dot(v, v);
#else
    return 0.0;
#endif
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if defined(REDUCES) && REDUCE == subgroup
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
#endif
) {
#if defined(REDUCES) && REDUCE == subgroup
    reduce_init(lid, sg_id, n_sg, sg_lane);
#elif defined(REDUCES)
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
    var squares: array<f32, TB>;
    let chunks = p.k / 32u;
#if SPLIT > 1
    let first = lane;
#else
    // Spelled out so the compiler sees the activation loads are the same for every lane
    // (one scalar load broadcast, not a gather per lane on CPU adapters).
    let first = 0u;
#endif
#if SPLIT == 1 && TB == 1 && defined(GROUP_CHUNKS)
    // Types whose chunks share words (the K-quants' headers and interleaved bit planes)
    // take GROUP_CHUNKS chunks at once, so that each word of a row is loaded once: on
    // CPU adapters every load of w is a gather across the lanes' rows.
    for (var g = 0u; g < chunks / GROUP_CHUNKS; g++) {
        var xs: array<vec4<f32>, GROUP_CHUNKS * 8>;
        for (var i = 0u; i < GROUP_CHUNKS * 8u; i++) {
            xs[i] = input4(xbase[0], g * GROUP_CHUNKS * 8u + i);
            squares[0] += square_sum4(xbase[0], g * GROUP_CHUNKS * 8u + i);
        }
        for (var r = 0u; r < ROWS; r++) {
            acc[r][0] += dot_group(rows[r], g, &xs);
        }
    }
#else
    for (var c = first; c < chunks; c += SPLIT) {
#if TB == 1
        var xs: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            xs[i] = input4(xbase[0], c * 8u + i);
            squares[0] += square_sum4(xbase[0], c * 8u + i);
        }
        for (var r = 0u; r < ROWS; r++) {
            acc[r][0] += dot32(rows[r], c, &xs);
        }
#else
        var xs: array<array<vec4<f32>, 8>, TB>;
        for (var j = 0u; j < TB; j++) {
            for (var i = 0u; i < 8u; i++) {
                xs[j][i] = input4(xbase[j], c * 8u + i);
                squares[j] += square_sum4(xbase[j], c * 8u + i);
            }
        }
        for (var r = 0u; r < ROWS; r++) {
            var wq = dq32(rows[r], c);
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
#endif
    // What each token's dot products are multiplied by: the norm's scale, or 1.
    var scale: array<f32, TB>;
    for (var j = 0u; j < TB; j++) {
#if XIN == rmsnorm
#if SPLIT > 1
        let ss = group_sum(squares[j]);
#else
        let ss = squares[j];
#endif
        scale[j] = inverseSqrt(ss / f32(p.k) + p.eps);
#else
        scale[j] = 1.0;
#endif
    }
#if OUT == argmax
    let slot = p.out_offset / (GROUPS * ROWS) + linear_workgroup(wid, nwg);
    for (var j = 0u; j < TB; j++) {
        // A lane's rows ascend, so a strict > keeps the lowest; rows past the end keep
        // an index past every row.
        var best = -3.4e38;
        var best_row = 0xffffffffu;
        for (var r = 0u; r < ROWS; r++) {
#if SPLIT > 1
            let s = group_sum(acc[r][j]) * scale[j];
#else
            let s = acc[r][j] * scale[j];
#endif
            if (row0 + r < p.n && s > best) {
                best = s;
                best_row = p.out_offset + row0 + r;
            }
        }
        let m = wg_argmax(best, best_row);
        if (lid == 0u && t0 + j < x_rows()) {
            let o = 2u * ((t0 + j) * p.y_stride + slot);
            y[o] = m.y;
            y[o + 1u] = m.x;
        }
    }
#else
    for (var r = 0u; r < ROWS; r++) {
        for (var j = 0u; j < TB; j++) {
#if SPLIT > 1
            let s = group_sum(acc[r][j]);
#else
            let s = acc[r][j];
#endif
            if (lane == 0u && row0 + r < p.n && t0 + j < x_rows()) {
                let o = (t0 + j) * p.y_stride + p.out_offset + row0 + r;
                store_product(o, s * scale[j]);
            }
        }
    }
#endif
}
