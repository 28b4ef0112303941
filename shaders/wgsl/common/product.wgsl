// Parameters and bindings shared by the matrix products (matvec, matmul,
// matmul_tokens): y[t, out_offset + n] (+)= W[n, :] . x[t, :] with W in its GGUF
// format. OUT = act (write activations), f32 (write floats), f32_add (accumulate into
// f32: adds a projection into the residual stream without another pass), argmax
// (matvec only: each workgroup's largest output and its row, as an (index, bits) pair).
#include "common/act.wgsl"
#include "common/step.wgsl"
#include "common/grid.wgsl"
#include "common/weights.wgsl"
#include "quant/{WTYPE}.wgsl"

struct Params {
    // Inputs per row (a multiple of 32).
    k: u32,
    // Rows in this weight buffer (a large tensor is split into several).
    n: u32,
    row_bytes: u32,
    // Output column of this buffer's first row.
    out_offset: u32,
    // vec4s between consecutive tokens in x.
    x_stride: u32,
    // Elements between consecutive tokens in y.
    y_stride: u32,
    // 1: x has one row per logits row of the step (step.n_rows), not per token.
    per_row: u32,
    // The norm's epsilon (matvec's XIN = rmsnorm).
    eps: f32,
}

#if OUT == act
alias out_t = act;
#elif OUT == argmax
alias out_t = u32;
#else
alias out_t = f32;
#endif

#if defined(XIN) && XIN == rmsnorm
// matvec's norm prologue reads the f32 residual stream itself.
alias x4 = vec4<f32>;
#else
alias x4 = act4;
#endif

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> w: array<u32>;
#if defined(XBIND) && XBIND == uniform
// x as a uniform binding (matvec on CPU adapters: lavapipe reads a uniform array at
// lane-varying indices as a plain gather, a storage array with a bounds-checked branch
// per lane and component). 64 KiB, the uniform binding every WebGPU adapter offers; the
// engine takes this variant only for plans whose rows of x fit in it.
@group(0) @binding(3) var<uniform> x: array<x4, 4096>;
#else
@group(0) @binding(3) var<storage, read> x: array<x4>;
#endif
@group(0) @binding(4) var<storage, read_write> y: array<out_t>;

// Rows of x this step.
fn x_rows() -> u32 {
    return select(step.n_tokens, step.n_rows, p.per_row != 0u);
}

// Stores one result.
fn store_product(o: u32, v: f32) {
#if OUT == f32_add
    y[o] += v;
#else
    y[o] = out_t(v);
#endif
}
