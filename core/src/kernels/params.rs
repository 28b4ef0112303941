//! Parameter blocks, laid out exactly as the `Params` structs of the WGSL kernels
//! (checked member by member against naga's reflection: `kernels::interface`).

use super::layout::gpu_struct;

gpu_struct! {
    /// `matvec.wgsl`, `matmul_tiled.wgsl` and `matmul_tokens.wgsl`.
    pub struct MatParams {
        pub k: u32,
        pub n: u32,
        pub row_bytes: u32,
        pub out_offset: u32,
        /// In vec4s.
        pub x_stride: u32,
        pub y_stride: u32,
        pub per_row: u32,
        /// The norm's epsilon (matvec's norm prologue).
        pub eps: f32,
    }
}

gpu_struct! {
    /// `embed.wgsl`.
    pub struct EmbedParams {
        pub k: u32,
        pub row_bytes: u32,
        pub row_offset: u32,
        pub n_rows: u32,
        pub scale: f32,
        pub _pad: [u32; 3],
    }
}

gpu_struct! {
    /// `rmsnorm.wgsl`.
    pub struct NormParams {
        pub n: u32,
        pub eps: f32,
        /// 1: normalise the rows listed in the step metadata.
        pub listed: u32,
        pub _pad: u32,
    }
}

gpu_struct! {
    /// `rope_kv.wgsl`.
    pub struct RopeParams {
        pub n_head: u32,
        pub n_kv_head: u32,
        pub head_dim: u32,
        pub n_rot: u32,
        pub qkv_stride: u32,
        pub kv_stride: u32,
        /// 1: NEOX pairs (j, j + n_rot/2); 0: interleaved pairs (2j, 2j+1).
        pub neox: u32,
        /// The first column of a token's qkv row that the bias buffer is added to: 0 for
        /// q, k and v, the values' first column when `head_norm` added the rest, and
        /// `qkv_stride` (nothing) without a bias.
        pub bias_start: u32,
    }
}

gpu_struct! {
    /// `head_norm.wgsl`.
    pub struct HeadNormParams {
        pub n_head: u32,
        pub n_kv_head: u32,
        pub head_dim: u32,
        pub qkv_stride: u32,
        pub eps: f32,
        /// 1: add the bias buffer to the query and key heads before normalising them.
        pub has_bias: u32,
        pub _pad: [u32; 2],
    }
}

gpu_struct! {
    /// `attention.wgsl`.
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
}

gpu_struct! {
    /// `glu.wgsl`.
    pub struct GluParams {
        pub n: u32,
        pub per_token: u32,
        pub _pad: [u32; 2],
    }
}

gpu_struct! {
    /// `moe_route.wgsl`.
    pub struct MoeRouteParams {
        pub n_expert: u32,
        pub n_used: u32,
        pub normalize: u32,
        pub scale: f32,
    }
}

gpu_struct! {
    /// The `Route` block of `moe_matvec.wgsl`.
    pub struct MoeRoute {
        pub expert: u32,
        pub n_used: u32,
        pub x_per_slot: u32,
        pub _pad: u32,
    }
}

gpu_struct! {
    /// `moe_combine.wgsl`.
    pub struct MoeCombineParams {
        pub n: u32,
        pub n_used: u32,
        pub _pad: [u32; 2],
    }
}

gpu_struct! {
    /// `argmax.wgsl`.
    pub struct ArgmaxParams {
        pub n: u32,
        pub _pad: [u32; 3],
    }
}

gpu_struct! {
    /// The uniform of `penalties.wgsl`: how many entries this step applies (one
    /// invocation each) and the logits per row.
    pub struct PenaltyParams {
        pub n_entries: u32,
        /// Logits per row.
        pub n: u32,
        pub _pad: [u32; 2],
    }
}

gpu_struct! {
    /// One distinct token of a row's penalty window: an element of `entries` in
    /// `penalties.wgsl` (`PenaltyEntry`, 16 bytes), uploaded as is. The CPU reference
    /// (`sampling::apply_penalties`) reads the same entries for one row and ignores `row`.
    #[derive(PartialEq, Eq)]
    pub struct PenaltyEntry {
        /// The token id.
        pub token: u32,
        /// Occurrences among the row's last `penalty_last_n` accepted tokens.
        pub count: u32,
        /// The logits row it applies to.
        pub row: u32,
        pub _pad: u32,
    }
}

impl PenaltyEntry {
    /// `token` seen `count` times, in row 0 (the engine sets each sampler's row).
    pub const fn new(token: u32, count: u32) -> PenaltyEntry {
        PenaltyEntry {
            token,
            count,
            row: 0,
            _pad: 0,
        }
    }
}

gpu_struct! {
    /// One logits row's sampling parameters, as `penalties.wgsl` and `candidates.wgsl`
    /// read them (`RowParams` in `common/sampling.wgsl`, an array element per row): the
    /// three penalty factors, and the candidates' cutoff.
    #[derive(PartialEq)]
    pub struct RowParams {
        /// Positive logits are divided by it, the others multiplied (`1` = off).
        pub repeat: f32,
        /// Subtracted once per occurrence (`0` = off).
        pub frequency: f32,
        /// Subtracted once per present token (`0` = off).
        pub presence: f32,
        /// Candidates are the tokens within this of the row's largest logit.
        pub cutoff: f32,
    }
}

gpu_struct! {
    /// `candidates.wgsl`.
    pub struct CandidateParams {
        pub n: u32,
        pub cap: u32,
        pub _pad: [u32; 2],
    }
}

gpu_struct! {
    /// `bandwidth.wgsl`.
    pub struct BandwidthParams {
        pub n: u32,
        pub per_group: u32,
        pub _pad: [u32; 2],
    }
}
