// Activation storage type, and the KV-cache storage type where the kernel has one.
// Included first by every kernel that stores either: `enable f16;` must precede all
// declarations.
// ACT = f32 | f16. Math is always done in f32; f16 is a storage format that halves
// activation traffic on adapters with shader-f16.
// KV = f32 | f16 | q8_0: the KV cache's, chosen independently (common/kv_access.wgsl).
#if ACT == f16 || (defined(KV) && KV == f16)
enable f16;
#endif
alias act = ACT;
alias act4 = vec4<ACT>;
#ifdef KV
#if KV == q8_0
// Packed quants and scales (common/kv_access.wgsl).
alias kv_t = u32;
#else
alias kv_t = KV;
#endif
#endif
