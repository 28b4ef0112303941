// Greedy sampling on the GPU: the index of the largest logit (the lowest index among
// equals), so only 8 bytes are read back per row. One workgroup per row.
//
// FROM = logits: a row is n logits, a logit's index its position.
// FROM = pairs: a row is n (index, bits of the logit) pairs in ascending index order,
// the partial results of matvec's argmax epilogue (the LM head that never writes its
// logits); this finishes them.
#include "common/reduce.wgsl"

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#if FROM == pairs
@group(0) @binding(1) var<storage, read> logits: array<u32>;
#else
@group(0) @binding(1) var<storage, read> logits: array<f32>;
#endif
// Per row: [index, bits of the logit]
@group(0) @binding(2) var<storage, read_write> result: array<u32>;

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
    let base = wid.x * p.n;
    var best = -3.4e38;
    var best_i = 0xffffffffu;
    // Each lane scans ascending indices, so a strict > keeps its lowest index.
    for (var i = lid; i < p.n; i += WG) {
#if FROM == pairs
        let v = bitcast<f32>(logits[2u * (base + i) + 1u]);
        let index = logits[2u * (base + i)];
#else
        let v = logits[base + i];
        let index = i;
#endif
        if (v > best) {
            best = v;
            best_i = index;
        }
    }
    let r = wg_argmax(best, best_i);
    if (lid == 0u) {
        result[2u * wid.x] = r.y;
        result[2u * wid.x + 1u] = r.x;
    }
}
