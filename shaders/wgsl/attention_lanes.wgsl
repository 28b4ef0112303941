// Causal attention for CPU-like adapters: each lane is one query (a token of one head)
// and walks the keys alone with its own running maximum and sum (online softmax), so
// there are no barriers and no reductions across lanes. The lanes of a workgroup are
// consecutive tokens of the step for the same head; when they are consecutive
// positions of one sequence (a prefill chunk), every key and value they read is the
// same for all of them: on a CPU adapter those are scalar loads broadcast to the SIMD
// lanes. A lane skips (masks) keys outside its causal range and sliding window.
// Workgroup x = head, y = block of WG tokens.
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/attention_params.wgsl"

@group(0) @binding(2) var<storage, read> qkv: array<act4>;
@group(0) @binding(3) var<storage, read> k_pool: array<kv_t>;
@group(0) @binding(4) var<storage, read> v_pool: array<kv_t>;
@group(0) @binding(5) var<storage, read_write> out: array<act4>;
@group(0) @binding(6) var<storage, read> step_meta: array<u32>;

#include "common/paged.wgsl"
#include "common/kv_access.wgsl"

const V4: u32 = HD / 4u;
const NEG: f32 = -3.0e38;

fn first_key(pos: u32) -> u32 {
    if (p.window > 0u && pos + 1u > p.window) {
        return pos + 1u - p.window;
    }
    return 0u;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let head = wid.x;
    let t0 = wid.y * WG;
    let t_end = min(t0 + WG, step.n_tokens);
    let t = min(t0 + lid, t_end - 1u);
    let live = t0 + lid < t_end;
    let pos = token_pos(t);
    let table = entry_info(token_entry(t)).x;
    let start = first_key(pos);
    // The keys any lane needs, computed alike in every lane (uniform bounds).
    var j_begin = 0xffffffffu;
    var j_end = 0u;
    for (var u = t0; u < t_end; u++) {
        let pu = token_pos(u);
        j_begin = min(j_begin, first_key(pu));
        j_end = max(j_end, pu);
    }
    let kv_off = (head / (p.n_head / p.n_kv_head)) * HD;
    let qb = (t * p.qkv_stride) / 4u + head * V4;
    var q: array<vec4<f32>, V4>;
    for (var i = 0u; i < V4; i++) {
        q[i] = vec4<f32>(qkv[qb + i]) * p.scale;
    }
    var acc: array<vec4<f32>, V4>;
    var m = NEG;
    var l = 0.0;
    for (var j = j_begin; j <= j_end; j++) {
        // A lane outside its own range reads one of its keys and discards it, so it
        // never looks up a table entry its sequence does not have (or has freed).
        let slot = kv_slot(table, clamp(j, start, pos));
        var s4 = vec4<f32>(0.0);
        for (var i = 0u; i < V4; i++) {
            s4 += q[i] * k4(slot, kv_off + 4u * i);
        }
        if (j >= start && j <= pos) {
            let s = s4.x + s4.y + s4.z + s4.w;
            let m_new = max(m, s);
            let alpha = exp(m - m_new);
            let e = exp(s - m_new);
            l = l * alpha + e;
            for (var i = 0u; i < V4; i++) {
                acc[i] = acc[i] * alpha + e * v4(slot, kv_off + 4u * i);
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
