// FlashAttention-2 for GPUs: causal attention of the step's queries over the paged KV
// cache, one workgroup per (work item, head). A work item is a tile of up to BQ
// queries of one sequence and a range of keys (common/attention_work.wgsl).
//
// The query tile sits in workgroup memory; the keys go by in tiles of BK, loaded once
// into workgroup memory for all BQ queries (keys, then values, in the same buffer).
// Each query row keeps a running maximum and sum (online softmax) and its output in
// registers, L lanes per row with HD / L dimensions each, so no score matrix larger
// than BQ x BK ever exists. Grouped-query heads map onto their KV head; a row masks
// keys outside its causal range and sliding window. A split item (one of several key
// ranges of one decoded token) writes (max, sum, output) to `partials` for
// flash_reduce.wgsl; others write the output directly.
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/attention_params.wgsl"

@group(0) @binding(2) var<storage, read> qkv: array<act>;
@group(0) @binding(3) var<storage, read> k_pool: array<kv_t>;
@group(0) @binding(4) var<storage, read> v_pool: array<kv_t>;
@group(0) @binding(5) var<storage, read_write> out: array<act>;
@group(0) @binding(6) var<storage, read> step_meta: array<u32>;
// Per (partial slot, head): max, sum, then HD output values.
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;

#include "common/paged.wgsl"
#include "common/attention_work.wgsl"
#include "common/kv_access.wgsl"

const WG: u32 = BQ * L;
const DPL: u32 = HD / L;
const NEG: f32 = -3.0e38;

var<workgroup> q_s: array<f32, BQ * HD>;
var<workgroup> kv_s: array<f32, BK * HD>;
var<workgroup> p_s: array<f32, BQ * BK>;
var<workgroup> slot_s: array<u32, BK>;

// Loads the keys (or values) of the current tile into kv_s, four values per lane and
// step; rows past n_k are zero.
fn load_tile(lid: u32, n_k: u32, kv_off: u32, values: bool) {
    for (var i = 4u * lid; i < BK * HD; i += 4u * WG) {
        let k = i / HD;
        var v = vec4<f32>(0.0);
        if (k < n_k) {
            let d = kv_off + i % HD;
            v = select(k4(slot_s[k], d), v4(slot_s[k], d), values);
        }
        kv_s[i] = v.x;
        kv_s[i + 1u] = v.y;
        kv_s[i + 2u] = v.z;
        kv_s[i + 3u] = v.w;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let w = work_item(wid.x);
    let head = wid.y;
    let row = lid / L;
    let lane = lid % L;
    let row_live = row < w.q_count;
    let t = w.q_first + min(row, w.q_count - 1u);
    let pos = token_pos(t);
    let table = entry_info(w.entry).x;
    var start = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        start = pos + 1u - p.window;
    }
    let kv_off = (head / (p.n_head / p.n_kv_head)) * HD;

    for (var i = lid; i < BQ * HD; i += WG) {
        let r = i / HD;
        let tq = w.q_first + min(r, w.q_count - 1u);
        q_s[i] = f32(qkv[tq * p.qkv_stride + head * HD + i % HD]) * p.scale;
    }

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, DPL>;
    // Keys before the window of the tile's first query (its smallest position) are
    // masked for every row: skip them. Work items are cut for all layers at once, so a
    // layer with its own window (Gemma's local layers) would otherwise walk every key.
    var k_lo = w.k_begin;
    let first_pos = token_pos(w.q_first);
    if (p.window > 0u && first_pos + 1u > p.window) {
        k_lo = max(k_lo, first_pos + 1u - p.window);
    }
    for (var kt = k_lo; kt < w.k_end; kt += BK) {
        let n_k = min(BK, w.k_end - kt);
        if (lid < BK) {
            slot_s[lid] = select(0u, kv_slot(table, kt + lid), lid < n_k);
        }
        workgroupBarrier();
        load_tile(lid, n_k, kv_off, false);
        workgroupBarrier();
        // Scores of this lane's keys, masked outside the row's range.
        for (var k = lane; k < BK; k += L) {
            let j = kt + k;
            var s = NEG;
            if (k < n_k && j >= start && j <= pos) {
                var acc4 = vec4<f32>(0.0);
                for (var d = 0u; d < HD; d += 4u) {
                    let qd = row * HD + d;
                    let kd = k * HD + d;
                    acc4 += vec4<f32>(q_s[qd], q_s[qd + 1u], q_s[qd + 2u], q_s[qd + 3u])
                          * vec4<f32>(kv_s[kd], kv_s[kd + 1u], kv_s[kd + 2u], kv_s[kd + 3u]);
                }
                s = acc4.x + acc4.y + acc4.z + acc4.w;
            }
            p_s[row * BK + k] = s;
        }
        workgroupBarrier();
        var tile_max = NEG;
        for (var k = 0u; k < BK; k++) {
            tile_max = max(tile_max, p_s[row * BK + k]);
        }
        let m_new = max(m, tile_max);
        let alpha = exp(m - m_new);
        var sum = 0.0;
        var pk: array<f32, BK>;
        for (var k = 0u; k < BK; k++) {
            let s = p_s[row * BK + k];
            pk[k] = select(exp(s - m_new), 0.0, s <= NEG);
            sum += pk[k];
        }
        l = l * alpha + sum;
        m = m_new;
        workgroupBarrier();
        load_tile(lid, n_k, kv_off, true);
        workgroupBarrier();
        for (var i = 0u; i < DPL; i++) {
            let d = lane + i * L;
            var a = acc[i] * alpha;
            for (var k = 0u; k < BK; k++) {
                a += pk[k] * kv_s[k * HD + d];
            }
            acc[i] = a;
        }
        workgroupBarrier();
    }
    if (!row_live) {
        return;
    }
    if (w.n_splits > 1u) {
        let b = ((w.partial + w.split) * p.n_head + head) * (HD + 2u);
        if (lane == 0u) {
            partials[b] = m;
            partials[b + 1u] = l;
        }
        for (var i = 0u; i < DPL; i++) {
            partials[b + 2u + lane + i * L] = acc[i];
        }
    } else {
        let ob = t * p.out_stride + head * HD;
        for (var i = 0u; i < DPL; i++) {
            out[ob + lane + i * L] = act(acc[i] / l);
        }
    }
}
