// The sampling candidates of each row of logits: every token whose logit is within the
// row's cutoff of the row's largest, compacted (at most `cap` of them) with their count,
// so the CPU sampler reads back a few kilobytes instead of the whole vocabulary. The
// order of the compacted entries is not deterministic; the CPU sorts them. One
// workgroup per row.
#include "common/reduce.wgsl"
#include "common/sampling.wgsl"

struct Params {
    n: u32,
    cap: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> row_params: array<RowParams>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
// Per row, 2 + 2 cap words: [count, bits of the max, then (token, bits of logit) pairs]
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<workgroup> found: atomic<u32>;

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
    let row = wid.x;
    let base = row * p.n;
    let ob = row * (2u + 2u * p.cap);
    if (lid == 0u) {
        atomicStore(&found, 0u);
    }
    var m = -3.4e38;
    for (var i = lid; i < p.n; i += WG) {
        m = max(m, logits[base + i]);
    }
    m = wg_max(m);
    let threshold = m - row_params[row].cutoff;
    for (var i = lid; i < p.n; i += WG) {
        let v = logits[base + i];
        if (v >= threshold) {
            let slot = atomicAdd(&found, 1u);
            if (slot < p.cap) {
                out[ob + 2u + 2u * slot] = i;
                out[ob + 3u + 2u * slot] = bitcast<u32>(v);
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        out[ob] = atomicLoad(&found);
        out[ob + 1u] = bitcast<u32>(m);
    }
}
