// Activation storage type. Included first by every kernel that stores activations:
// `enable f16;` must precede all declarations.
// ACT = f32 | f16. Math is always done in f32; f16 is a storage format that halves
// activation and KV-cache traffic on adapters with shader-f16.
#if ACT == f16
enable f16;
#endif
alias act = ACT;
alias act4 = vec4<ACT>;
