// Mixture-of-experts routing: for each token, the router's scores over n_expert experts
// (f32 rows written by the router product) become probabilities (GATING = softmax |
// sigmoid), the n_used most probable experts are chosen (the lower index first among
// equals), their weights optionally divided by their sum, then scaled. Writes per token
// and slot j: routes[2 (t n_used + j)] = expert, routes[2 (t n_used + j) + 1] = weight bits.
// One invocation per token.
#include "common/step.wgsl"

struct Params {
    n_expert: u32,
    n_used: u32,
    // 1: divide the chosen weights by their sum.
    normalize: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> scores: array<f32>;
@group(0) @binding(3) var<storage, read_write> routes: array<u32>;

const MAX_USED: u32 = 16u;

fn probability(s: f32, max_s: f32) -> f32 {
#if GATING == softmax
    // Unnormalised: the softmax's denominator is applied once all are known.
    return exp(s - max_s);
#else
    return 1.0 / (1.0 + exp(-s));
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= step.n_tokens) {
        return;
    }
    let base = t * p.n_expert;
    var max_s = scores[base];
    for (var e = 1u; e < p.n_expert; e++) {
        max_s = max(max_s, scores[base + e]);
    }
    var total = 0.0;
    for (var e = 0u; e < p.n_expert; e++) {
        total += probability(scores[base + e], max_s);
    }
#if GATING == sigmoid
    total = 1.0;
#endif
    var chosen: array<u32, MAX_USED>;
    var weight: array<f32, MAX_USED>;
    var sum = 0.0;
    for (var j = 0u; j < p.n_used; j++) {
        // The best expert not chosen yet; strict > keeps the lower index among equals.
        var best = 0xffffffffu;
        var best_p = -1.0;
        for (var e = 0u; e < p.n_expert; e++) {
            var taken = false;
            for (var i = 0u; i < j; i++) {
                taken = taken || chosen[i] == e;
            }
            let pe = probability(scores[base + e], max_s) / total;
            if (!taken && pe > best_p) {
                best = e;
                best_p = pe;
            }
        }
        chosen[j] = best;
        weight[j] = best_p;
        sum += best_p;
    }
    for (var j = 0u; j < p.n_used; j++) {
        var w = weight[j];
        if (p.normalize != 0u) {
            w = w / sum;
        }
        let o = 2u * (t * p.n_used + j);
        routes[o] = chosen[j];
        routes[o + 1u] = bitcast<u32>(w * p.scale);
    }
}
