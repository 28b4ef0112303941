// Causal attention of the step's queries over the paged KV cache, with grouped-query
// heads and an optional sliding window. One workgroup per (query head, token): it walks
// the keys in tiles of WG, one key per lane, keeping a running maximum and sum (online
// softmax) so no score matrix is ever stored. HD is the head dimension; each lane owns
// HD / WG output dimensions (rounded up).
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/reduce.wgsl"
#include "common/attention_params.wgsl"

@group(0) @binding(2) var<storage, read> qkv: array<act>;
@group(0) @binding(3) var<storage, read> k_pool: array<kv_t>;
@group(0) @binding(4) var<storage, read> v_pool: array<kv_t>;
@group(0) @binding(5) var<storage, read_write> out: array<act>;
@group(0) @binding(6) var<storage, read> step_meta: array<u32>;

#include "common/paged.wgsl"
#include "common/kv_access.wgsl"

const DPI: u32 = (HD + WG - 1u) / WG;
// A finite stand-in for -infinity: exp(NEG - m) is 0 without inf - inf = NaN.
const NEG: f32 = -3.0e38;

var<workgroup> q_s: array<f32, HD>;
var<workgroup> p_s: array<f32, WG>;
// Pool slot of each key of the tile.
var<workgroup> slot_s: array<u32, WG>;

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
    let head = wid.x;
    let t = wid.y;
    let pos = token_pos(t);
    let table = entry_info(token_entry(t)).x;
    let n = pos + 1u;
    var start = 0u;
    if (p.window > 0u && n > p.window) {
        start = n - p.window;
    }
    let kv_off = (head / (p.n_head / p.n_kv_head)) * HD;
    let qb = t * p.qkv_stride + head * HD;
    for (var d = lid; d < HD; d += WG) {
        q_s[d] = f32(qkv[qb + d]) * p.scale;
    }
    workgroupBarrier();

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, DPI>;
    for (var tile = start; tile < n; tile += WG) {
        let j = tile + lid;
        var s = NEG;
        var slot = 0u;
        if (j < n) {
            slot = kv_slot(table, j);
            var dot4 = vec4<f32>(0.0);
            for (var d = 0u; d < HD; d += 4u) {
                dot4 += vec4<f32>(q_s[d], q_s[d + 1u], q_s[d + 2u], q_s[d + 3u]) * k4(slot, kv_off + d);
            }
            s = dot4.x + dot4.y + dot4.z + dot4.w;
        }
        slot_s[lid] = slot;
        let m_new = max(m, wg_max(s));
        let alpha = exp(m - m_new);
        var e = 0.0;
        if (j < n) {
            e = exp(s - m_new);
        }
        p_s[lid] = e;
        // wg_sum's barrier also publishes p_s and slot_s.
        l = l * alpha + wg_sum(e);
        let count = min(WG, n - tile);
        for (var i = 0u; i < DPI; i++) {
            let d = lid + i * WG;
            if (d < HD) {
                var a = acc[i] * alpha;
                for (var jj = 0u; jj < count; jj++) {
                    a += p_s[jj] * v1(slot_s[jj], kv_off + d);
                }
                acc[i] = a;
            }
        }
        workgroupBarrier();
        m = m_new;
    }
    let ob = t * p.out_stride + head * HD;
    for (var i = 0u; i < DPI; i++) {
        let d = lid + i * WG;
        if (d < HD) {
            out[ob + d] = act(acc[i] / l);
        }
    }
}
