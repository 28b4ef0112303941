//! Parameter blocks, laid out exactly as the `Params` structs of the WGSL kernels.

/// `matvec.wgsl`, `matmul_tiled.wgsl` and `matmul_tokens.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatParams {
    pub k: u32,
    pub n: u32,
    pub row_bytes: u32,
    pub out_offset: u32,
    /// In vec4s.
    pub x_stride: u32,
    pub y_stride: u32,
    pub per_row: u32,
    pub _pad: u32,
}

/// `embed.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbedParams {
    pub k: u32,
    pub row_bytes: u32,
    pub row_offset: u32,
    pub n_rows: u32,
    pub scale: f32,
    pub _pad: [u32; 3],
}

/// `rmsnorm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub n: u32,
    pub eps: f32,
    /// 1: normalise the rows listed in the step metadata.
    pub listed: u32,
    pub _pad: u32,
}

/// `rope_kv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RopeParams {
    pub n_head: u32,
    pub n_kv_head: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub qkv_stride: u32,
    pub kv_stride: u32,
    /// 1: NEOX pairs (j, j + n_rot/2); 0: interleaved pairs (2j, 2j+1).
    pub neox: u32,
    /// 1: add the bias buffer to q, k and v.
    pub has_bias: u32,
}

/// `head_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeadNormParams {
    pub n_head: u32,
    pub n_kv_head: u32,
    pub head_dim: u32,
    pub qkv_stride: u32,
    pub eps: f32,
    pub _pad: [u32; 3],
}

/// `attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnParams {
    pub n_head: u32,
    pub n_kv_head: u32,
    pub qkv_stride: u32,
    pub kv_stride: u32,
    pub out_stride: u32,
    pub window: u32,
    pub scale: f32,
    /// Also the kernel's `HD` define, which sizes its arrays.
    pub head_dim: u32,
}

/// `glu.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GluParams {
    pub n: u32,
    pub per_token: u32,
    pub _pad: [u32; 2],
}

/// `moe_route.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MoeRouteParams {
    pub n_expert: u32,
    pub n_used: u32,
    pub normalize: u32,
    pub scale: f32,
}

/// The `Route` block of `moe_matvec.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MoeRoute {
    pub expert: u32,
    pub n_used: u32,
    pub x_per_slot: u32,
    pub _pad: u32,
}

/// `moe_combine.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MoeCombineParams {
    pub n: u32,
    pub n_used: u32,
    pub _pad: [u32; 2],
}

/// `argmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ArgmaxParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

/// `penalties.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PenaltyParams {
    pub n_entries: u32,
    /// Logits per row.
    pub n: u32,
    pub _pad: [u32; 2],
}

/// One penalised token of one row (`penalties.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PenaltyEntry {
    pub token: u32,
    pub count: u32,
    pub row: u32,
    pub _pad: u32,
}

/// A row's sampling parameters (`penalties.wgsl`, `candidates.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowParams {
    pub repeat: f32,
    pub frequency: f32,
    pub presence: f32,
    pub cutoff: f32,
}

/// `candidates.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CandidateParams {
    pub n: u32,
    pub cap: u32,
    pub _pad: [u32; 2],
}

/// `bandwidth.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BandwidthParams {
    pub n: u32,
    pub per_group: u32,
    pub _pad: [u32; 2],
}
