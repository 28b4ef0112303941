// The sampling candidates: every token whose logit is within `cutoff` of the largest,
// compacted into `out` (at most `cap` of them) with their count, so the CPU sampler
// reads back a few kilobytes instead of the whole vocabulary. The order of the
// compacted entries is not deterministic; the CPU sorts them. One workgroup.
#include "common/reduce.wgsl"

struct Params {
    n: u32,
    cutoff: f32,
    cap: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// [count, bits of the max, then (token, bits of logit) pairs]
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> found: atomic<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
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
    if (lid == 0u) {
        atomicStore(&found, 0u);
    }
    var m = -3.4e38;
    for (var i = lid; i < p.n; i += WG) {
        m = max(m, logits[i]);
    }
    m = wg_max(m);
    let threshold = m - p.cutoff;
    for (var i = lid; i < p.n; i += WG) {
        let v = logits[i];
        if (v >= threshold) {
            let slot = atomicAdd(&found, 1u);
            if (slot < p.cap) {
                out[2u + 2u * slot] = i;
                out[3u + 2u * slot] = bitcast<u32>(v);
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        out[0] = atomicLoad(&found);
        out[1] = bitcast<u32>(m);
    }
}
