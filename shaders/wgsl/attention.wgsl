// Causal attention of the step's queries over the paged KV cache, with grouped-query
// heads and an optional sliding window. One workgroup per G query heads of one token
// that share a KV head (G divides the GQA ratio): it walks the keys in tiles of WG, one
// key per lane, reading each key and value once for its G heads, and keeps a running
// maximum and sum per head (online softmax) so no score matrix is ever stored. HD is
// the head dimension; each lane owns HD / WG output dimensions (rounded up) of each head.
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

// The G heads' queries (scaled), one after the other.
var<workgroup> q_s: array<f32, G * HD>;
// Each head's probabilities for the tile's keys.
var<workgroup> p_s: array<f32, G * WG>;
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
    let head0 = wid.x * G;
    let t = wid.y;
    let pos = token_pos(t);
    let table = entry_info(token_entry(t)).x;
    let n = pos + 1u;
    var start = 0u;
    if (p.window > 0u && n > p.window) {
        start = n - p.window;
    }
    // G divides the ratio, so the G heads share this KV head.
    let kv_off = (head0 / (p.n_head / p.n_kv_head)) * HD;
    let qb = t * p.qkv_stride + head0 * HD;
    for (var i = lid; i < G * HD; i += WG) {
        q_s[i] = f32(qkv[qb + i]) * p.scale;
    }
    workgroupBarrier();

    var m: array<f32, G>;
    var l: array<f32, G>;
    var acc: array<array<f32, DPI>, G>;
    for (var g = 0u; g < G; g++) {
        m[g] = NEG;
    }
    for (var tile = start; tile < n; tile += WG) {
        let j = tile + lid;
        var s: array<f32, G>;
        var slot = 0u;
        for (var g = 0u; g < G; g++) {
            s[g] = NEG;
        }
        if (j < n) {
            slot = kv_slot(table, j);
            var dot4: array<vec4<f32>, G>;
            for (var d = 0u; d < HD; d += 4u) {
                let k = k4(slot, kv_off + d);
                for (var g = 0u; g < G; g++) {
                    let q = g * HD + d;
                    dot4[g] += vec4<f32>(q_s[q], q_s[q + 1u], q_s[q + 2u], q_s[q + 3u]) * k;
                }
            }
            for (var g = 0u; g < G; g++) {
                s[g] = dot(dot4[g], vec4<f32>(1.0));
            }
        }
        slot_s[lid] = slot;
        var alpha: array<f32, G>;
        for (var g = 0u; g < G; g++) {
            let m_new = max(m[g], wg_max(s[g]));
            alpha[g] = exp(m[g] - m_new);
            var e = 0.0;
            if (j < n) {
                e = exp(s[g] - m_new);
            }
            p_s[g * WG + lid] = e;
            // wg_sum's barrier also publishes p_s and slot_s.
            l[g] = l[g] * alpha[g] + wg_sum(e);
            m[g] = m_new;
        }
        let count = min(WG, n - tile);
        for (var i = 0u; i < DPI; i++) {
            let d = lid + i * WG;
            if (d < HD) {
                var a: array<f32, G>;
                for (var g = 0u; g < G; g++) {
                    a[g] = acc[g][i] * alpha[g];
                }
                for (var jj = 0u; jj < count; jj++) {
                    let v = v1(slot_s[jj], kv_off + d);
                    for (var g = 0u; g < G; g++) {
                        a[g] += p_s[g * WG + jj] * v;
                    }
                }
                for (var g = 0u; g < G; g++) {
                    acc[g][i] = a[g];
                }
            }
        }
        workgroupBarrier();
    }
    let ob = t * p.out_stride + head0 * HD;
    for (var g = 0u; g < G; g++) {
        for (var i = 0u; i < DPI; i++) {
            let d = lid + i * WG;
            if (d < HD) {
                out[ob + g * HD + d] = act(acc[g][i] / l[g]);
            }
        }
    }
}
