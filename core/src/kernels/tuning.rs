//! Kernel shapes per tier. CPU adapters get whole rows per lane and register blocking;
//! GPUs get rows split across a subgroup's lanes. The numbers are starting points to be
//! replaced by measured per-vendor tables.

use crate::gpu::{Capabilities, GpuError, Reduce, Tier, Variant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tuning {
    pub matvec_split: u32,
    pub matvec_rows: u32,
    pub matvec_wg: u32,
    /// Which prefill kernel: `matmul` (lanes take rows, register-blocked) or
    /// `matmul_tokens` (lanes take tokens and share each weight load).
    pub matmul_tokens: bool,
    pub matmul_rt: u32,
    pub matmul_rn: u32,
    pub matmul_wg: u32,
    /// Rows per workgroup and lanes (tokens) per workgroup of `matmul_tokens`.
    pub tokens_rn: u32,
    pub tokens_wg: u32,
    pub norm_wg: u32,
    /// FlashAttention-2 with split-K decoding (`flash_attn`, for GPUs) instead of the
    /// CPU-adapter kernels below.
    pub attn_flash: bool,
    /// For prefill, `attention_lanes` (a query per lane, no barriers) instead of
    /// `attention` (a workgroup per query, tiles of keys with barriers).
    pub attn_lanes: bool,
    pub attn_lanes_wg: u32,
    pub attn_wg: u32,
    pub argmax_wg: u32,
}

impl Tuning {
    pub fn new(variant: Variant, caps: &Capabilities) -> Tuning {
        match variant.tier {
            Tier::CpuLike => Tuning {
                matvec_split: 1,
                // Measured on lavapipe (Mesa 25, 256-bit): the activation loads are the
                // same in every lane but still cost a bounds-checked load each, so 8 rows
                // per lane share them; 16 lanes keep enough workgroups for small matrices.
                matvec_rows: 8,
                matvec_wg: 16,
                matmul_tokens: true,
                matmul_rt: 4,
                matmul_rn: 2,
                matmul_wg: 64,
                // 32 rows share each lane's activation loads (measured best on lavapipe).
                tokens_rn: 32,
                // One SIMD register of lanes.
                tokens_wg: caps.subgroup_min_size.clamp(4, 64).next_power_of_two(),
                norm_wg: 64,
                attn_flash: false,
                attn_lanes: true,
                // Lanes are tokens: one SIMD register of them.
                attn_lanes_wg: caps.subgroup_min_size.clamp(4, 32).next_power_of_two(),
                attn_wg: 64,
                argmax_wg: 256,
            },
            Tier::Gpu => {
                // A row group must sit inside one subgroup for the shuffle reduction.
                let split = match variant.reduce {
                    Reduce::Subgroup => caps.subgroup_min_size.clamp(4, 32).next_power_of_two(),
                    Reduce::Workgroup => 32,
                };
                let split = if split > caps.subgroup_min_size && variant.reduce == Reduce::Subgroup {
                    split / 2
                } else {
                    split
                };
                Tuning {
                    matvec_split: split,
                    matvec_rows: 1,
                    matvec_wg: 128,
                    matmul_tokens: false,
                    matmul_rt: 4,
                    matmul_rn: 4,
                    matmul_wg: 64,
                    tokens_rn: 16,
                    tokens_wg: 32,
                    norm_wg: 256,
                    attn_flash: true,
                    attn_lanes: false,
                    attn_lanes_wg: 32,
                    attn_wg: 64,
                    argmax_wg: 256,
                }
            }
        }
    }
}

impl Tuning {
    /// Applies `name=value` overrides separated by commas (`WISP_TUNE`, for tuning
    /// experiments), e.g. `matvec_split=8,matvec_rows=1`.
    pub fn with_overrides(mut self, spec: &str) -> Result<Tuning, GpuError> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || GpuError::InvalidVariant {
                name: "WISP_TUNE".into(),
                value: item.to_string(),
                expected: "name=number with a name of Tuning's fields",
            };
            let (name, value) = item.split_once('=').ok_or_else(bad)?;
            let value: u32 = value.trim().parse().map_err(|_| bad())?;
            let field = match name.trim() {
                "matvec_split" => &mut self.matvec_split,
                "matvec_rows" => &mut self.matvec_rows,
                "matvec_wg" => &mut self.matvec_wg,
                "matmul_tokens" => {
                    self.matmul_tokens = value != 0;
                    continue;
                }
                "attn_lanes" => {
                    self.attn_lanes = value != 0;
                    continue;
                }
                "attn_flash" => {
                    self.attn_flash = value != 0;
                    continue;
                }
                "tokens_rn" => &mut self.tokens_rn,
                "tokens_wg" => &mut self.tokens_wg,
                "matmul_rt" => &mut self.matmul_rt,
                "matmul_rn" => &mut self.matmul_rn,
                "matmul_wg" => &mut self.matmul_wg,
                "norm_wg" => &mut self.norm_wg,
                "attn_wg" => &mut self.attn_wg,
                "attn_lanes_wg" => &mut self.attn_lanes_wg,
                "argmax_wg" => &mut self.argmax_wg,
                _ => return Err(bad()),
            };
            *field = value;
        }
        Ok(self)
    }
}

/// Tile sizes of the flash-attention kernel for a head dimension: the largest query
/// and key tiles whose workgroup memory fits the adapter, 8 lanes per query row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlashTiles {
    pub bq: u32,
    pub bk: u32,
    pub lanes: u32,
}

impl FlashTiles {
    pub fn for_head_dim(head_dim: u32, caps: &Capabilities) -> FlashTiles {
        let lanes = 8.min(head_dim / 4).max(4);
        let limit = caps.max_workgroup_storage.min(32768);
        let max_wg = caps.max_invocations_per_workgroup.min(256);
        let (mut bq, mut bk) = (16u32, 32u32);
        // Shrink keys first (the query tile is reused across every key tile), then queries.
        while wisp_shaders::flash_tile_bytes(head_dim, bq, bk) > limit || bq * lanes > max_wg {
            if bk > 8 && wisp_shaders::flash_tile_bytes(head_dim, bq, bk) > limit {
                bk /= 2;
            } else if bq > 1 {
                bq /= 2;
            } else {
                break;
            }
        }
        FlashTiles { bq, bk, lanes }
    }
}
