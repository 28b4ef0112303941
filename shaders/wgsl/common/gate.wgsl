// The nonlinearity of a gated feed-forward network's gate, on GATE_T (f32, or
// vec4<f32>: the includer defines it). GATE = silu (SwiGLU: llama, qwen2) | gelu_tanh
// (GeGLU with tanh-approximated GELU: gemma). Included by `glu.wgsl` and by
// `matvec.wgsl`'s gate prologue.
fn gate(g: GATE_T) -> GATE_T {
#if GATE == silu
    return g / (1.0 + exp(-g));
#else
    // 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))). tanh is written through exp of a
    // non-positive argument so that large |g| cannot overflow.
    let z = 0.7978845608028654 * (g + 0.044715 * g * g * g);
    let e = exp(-2.0 * abs(z));
    let t = sign(z) * (1.0 - e) / (1.0 + e);
    return 0.5 * g * (1.0 + t);
#endif
}
