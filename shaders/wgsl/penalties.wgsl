// Repetition, frequency and presence penalties applied to the logits in place, as
// llama.cpp defines them. One invocation per distinct recent token (no two touch the
// same logit).
struct Params {
    n_entries: u32,
    repeat: f32,
    frequency: f32,
    presence: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// (token, count in the recent window)
@group(0) @binding(1) var<storage, read> entries: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= p.n_entries) {
        return;
    }
    let e = entries[gid.x];
    var l = logits[e.x];
    if (l > 0.0) {
        l = l / p.repeat;
    } else {
        l = l * p.repeat;
    }
    l -= f32(e.y) * p.frequency + p.presence;
    logits[e.x] = l;
}
