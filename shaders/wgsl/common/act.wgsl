// Activation storage type, and the KV-cache storage type where the kernel has one.
// Included first by every kernel that stores either: `enable f16;` must precede all
// declarations.
// ACT = f32 | f16. Math is always done in f32; f16 is a storage format that halves
// activation traffic on adapters with shader-f16.
// KV = f32 | f16: the same for the KV cache, chosen independently.
#if ACT == f16 || (defined(KV) && KV == f16)
enable f16;
#endif
alias act = ACT;
alias act4 = vec4<ACT>;
#ifdef KV
alias kv_t = KV;
alias kv4 = vec4<KV>;
#endif
