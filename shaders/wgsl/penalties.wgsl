// Repetition, frequency and presence penalties applied to the logits in place, as
// llama.cpp defines them. One invocation per (row, distinct recent token) entry; no two
// entries touch the same logit.
#include "common/sampling.wgsl"

struct Params {
    n_entries: u32,
    // Logits per row.
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

// One penalised token of one row; the Rust side is `PenaltyEntry`.
struct PenaltyEntry {
    token: u32,
    // Occurrences in the row's recent window (at least 1).
    count: u32,
    row: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> entries: array<PenaltyEntry>;
@group(0) @binding(2) var<storage, read> row_params: array<RowParams>;
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n_entries) {
        return;
    }
    let e = entries[gid.x];
    let rp = row_params[e.row];
    let i = e.row * p.n + e.token;
    var l = logits[i];
    if (l > 0.0) {
        l = l / rp.repeat;
    } else {
        l = l * rp.repeat;
    }
    l -= f32(e.count) * rp.frequency + rp.presence;
    logits[i] = l;
}
