// Parameters and bindings of the attention kernels (attention, attention_lanes). The
// keys and values of position j of a token's sequence are in the pools at slot
// kv_slot(table, j) (common/paged.wgsl).
struct Params {
    n_head: u32,
    n_kv_head: u32,
    // Elements per token in qkv (queries start at column 0).
    qkv_stride: u32,
    // Elements per position in each pool.
    kv_stride: u32,
    // Elements per token in out.
    out_stride: u32,
    // Keys older than this many positions are not attended to (0: no window).
    window: u32,
    scale: f32,
    // Equal to HD, which sizes the kernels' arrays.
    head_dim: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
