// Repetition, frequency and presence penalties applied to the logits in place, as
// llama.cpp defines them. One invocation per (row, distinct recent token) entry; no two
// entries touch the same logit.
struct Params {
    n_entries: u32,
    // Logits per row.
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// (token, count in the recent window, row, unused)
@group(0) @binding(1) var<storage, read> entries: array<vec4<u32>>;
// Per row: (repeat, frequency, presence, candidate cutoff)
@group(0) @binding(2) var<storage, read> row_params: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n_entries) {
        return;
    }
    let e = entries[gid.x];
    let rp = row_params[e.z];
    let i = e.z * p.n + e.x;
    var l = logits[i];
    if (l > 0.0) {
        l = l / rp.x;
    } else {
        l = l * rp.x;
    }
    l -= f32(e.y) * rp.y + rp.z;
    logits[i] = l;
}
