// Merges the partial results of split-K attention: for a decoded token whose keys were
// split over several work items, out = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s
// with M the largest m_s. One workgroup per (reduce item, head); lanes take dimensions.
// Reduce items are ReduceItem records in the step metadata (common/step.wgsl).
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/attention_params.wgsl"

@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<act>;
@group(0) @binding(4) var<storage, read> step_meta: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let b = step.reduce + REDUCE_ITEM_WORDS * wid.x;
    let item = ReduceItem(step_meta[b], step_meta[b + 1u], step_meta[b + 2u], step_meta[b + 3u]);
    let t = item.token;
    let first = item.first_partial;
    let n = item.n_splits;
    let head = wid.y;
    var big = -3.0e38;
    for (var s = 0u; s < n; s++) {
        big = max(big, partials[((first + s) * p.n_head + head) * (HD + 2u)]);
    }
    var total = 0.0;
    for (var s = 0u; s < n; s++) {
        let pb = ((first + s) * p.n_head + head) * (HD + 2u);
        total += exp(partials[pb] - big) * partials[pb + 1u];
    }
    for (var d = lid; d < HD; d += WG) {
        var o = 0.0;
        for (var s = 0u; s < n; s++) {
            let pb = ((first + s) * p.n_head + head) * (HD + 2u);
            o += exp(partials[pb] - big) * partials[pb + 2u + d];
        }
        out[t * p.out_stride + head * HD + d] = act(o / total);
    }
}
