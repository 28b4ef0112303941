// Causal attention for CPU-like adapters: each lane is one query (a token of one head)
// and walks the keys alone with its own running maximum and sum (online softmax), so
// there are no barriers and no reductions across lanes. The lanes of a workgroup are
// consecutive tokens of the same head, so every key and value they read is the same for
// all of them: on a CPU adapter those are scalar loads broadcast to the SIMD lanes.
// A lane skips (masks) keys outside its causal range and sliding window.
// Workgroup x = head, y = block of WG tokens.
#include "common/act.wgsl"
#include "common/step.wgsl"

#include "common/attention_params.wgsl"
@group(0) @binding(2) var<storage, read> qkv: array<act4>;
@group(0) @binding(3) var<storage, read> k_cache: array<act4>;
@group(0) @binding(4) var<storage, read> v_cache: array<act4>;
@group(0) @binding(5) var<storage, read_write> out: array<act4>;

const V4: u32 = HD / 4u;
const NEG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.x;
    let t0 = wid.y * WG;
    let t = min(t0 + lid, step.n_tokens - 1u);
    let live = t0 + lid < step.n_tokens;
    let pos = step.pos0 + t;
    var start = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        start = pos + 1u - p.window;
    }
    // The keys any lane of the workgroup needs: the same bounds for every lane.
    let last_t = min(t0 + WG, step.n_tokens) - 1u;
    let j_end = step.pos0 + last_t;
    var j_begin = 0u;
    if (p.window > 0u && step.pos0 + t0 + 1u > p.window) {
        j_begin = step.pos0 + t0 + 1u - p.window;
    }
    let kv_off = (head / (p.n_head / p.n_kv_head)) * V4;
    let kv_stride4 = p.kv_stride / 4u;
    let qb = (t * p.qkv_stride) / 4u + head * V4;
    var q: array<vec4<f32>, V4>;
    for (var i = 0u; i < V4; i++) {
        q[i] = vec4<f32>(qkv[qb + i]) * p.scale;
    }
    var acc: array<vec4<f32>, V4>;
    var m = NEG;
    var l = 0.0;
    for (var j = j_begin; j <= j_end; j++) {
        let kb = j * kv_stride4 + kv_off;
        var s4 = vec4<f32>(0.0);
        for (var i = 0u; i < V4; i++) {
            s4 += q[i] * vec4<f32>(k_cache[kb + i]);
        }
        if (j >= start && j <= pos) {
            let s = s4.x + s4.y + s4.z + s4.w;
            let m_new = max(m, s);
            let alpha = exp(m - m_new);
            let e = exp(s - m_new);
            l = l * alpha + e;
            for (var i = 0u; i < V4; i++) {
                acc[i] = acc[i] * alpha + e * vec4<f32>(v_cache[kb + i]);
            }
            m = m_new;
        }
    }
    if (live) {
        let ob = (t * p.out_stride) / 4u + head * V4;
        for (var i = 0u; i < V4; i++) {
            out[ob + i] = act4(acc[i] / l);
        }
    }
}
