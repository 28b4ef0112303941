// Embedding lookup: x[t, :] = scale * E[token[t], :], E in its GGUF block format.
// A large table is split into several buffers; each dispatch covers the rows of one
// buffer and tokens outside it are left to the other dispatches. Workgroup x = token.
#include "common/step.wgsl"
#include "common/weights.wgsl"
#include "quant/{WTYPE}.wgsl"

struct Params {
    // Elements per row (a multiple of 32).
    k: u32,
    row_bytes: u32,
    // The first row held by this buffer, and how many it holds.
    row_offset: u32,
    n_rows: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.x;
    let token = tokens[t];
    if (token < p.row_offset || token - p.row_offset >= p.n_rows) {
        return;
    }
    let row = (token - p.row_offset) * p.row_bytes;
    let chunks = p.k / 32u;
    let out = t * (p.k / 4u);
    for (var c = lid; c < chunks; c += WG) {
        var v = dq32(row, c);
        for (var i = 0u; i < 8u; i++) {
            x[out + c * 8u + i] = p.scale * v[i];
        }
    }
}
