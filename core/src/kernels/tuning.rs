//! Kernel shapes per tier. CPU adapters get whole rows per lane and register blocking;
//! GPUs get rows split across a subgroup's lanes. The numbers are starting points to be
//! replaced by measured per-vendor tables.

use crate::gpu::{Capabilities, GpuError, Reduce, Tier, Variant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tuning {
    pub matvec_split: u32,
    pub matvec_rows: u32,
    pub matvec_wg: u32,
    /// Which prefill kernel: `matmul_tokens` (lanes take tokens and share each weight
    /// load; no barriers, for CPU adapters) or `matmul_tiled` (workgroup-memory tiles).
    pub matmul_tokens: bool,
    /// `matmul_tiled`'s output tile (weight rows x tokens) and each lane's share of it.
    pub tile_bm: u32,
    pub tile_bn: u32,
    pub tile_tm: u32,
    pub tile_tn: u32,
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
    /// Split-K decoding: a decoded token gets one work item per this many keys, up to
    /// `attn_max_splits` items. GPUs want many short items (one workgroup walks its keys
    /// serially, so few long ones leave the device idle and wait on latency).
    pub attn_split_keys: u32,
    pub attn_max_splits: u32,
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
                tile_bm: 64,
                tile_bn: 32,
                tile_tm: 4,
                tile_tn: 2,
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
                attn_split_keys: 256,
                attn_max_splits: 16,
                argmax_wg: 256,
            },
            Tier::Gpu => {
                // A row group must sit inside one subgroup for the shuffle reduction.
                let split = match variant.reduce {
                    Reduce::Subgroup => caps.subgroup_min_size.clamp(4, 32).next_power_of_two(),
                    Reduce::Workgroup => 32,
                };
                let split = if split > caps.subgroup_min_size && variant.reduce == Reduce::Subgroup
                {
                    split / 2
                } else {
                    split
                };
                Tuning {
                    matvec_split: split,
                    matvec_rows: 1,
                    matvec_wg: 128,
                    matmul_tokens: false,
                    // Measured on an H100 with SmolLM2 (step_profile, WISP_TUNE sweep):
                    // small tiles keep enough workgroups for 576-wide layers; 32 x 32
                    // was fastest for a 128-token prefill (4.6 ms of matmul against 6.0
                    // for 64 x 32 and 6.2 for 64 x 64), within 7% of the best for decode
                    // batches of 4 and 64.
                    tile_bm: 32,
                    tile_bn: 32,
                    tile_tm: 2,
                    tile_tn: 2,
                    tokens_rn: 16,
                    tokens_wg: 32,
                    norm_wg: 256,
                    attn_flash: true,
                    attn_lanes: false,
                    attn_lanes_wg: 32,
                    attn_wg: 64,
                    // Measured on an H100 (SmolLM2, contexts 256 to 8k): 32-key items
                    // beat 64 to 256 up to 1k keys; past 64 items the reduce pass costs
                    // more than the longer items it saves.
                    attn_split_keys: 32,
                    attn_max_splits: 64,
                    argmax_wg: 256,
                }
            }
        }
    }
}

impl Tuning {
    /// The tier's tuning with the `WISP_TUNE` overrides (tuning experiments only: an
    /// invalid setting is reported and ignored).
    pub fn for_adapter(variant: Variant, caps: &Capabilities) -> Tuning {
        let tuning = Tuning::new(variant, caps);
        match std::env::var("WISP_TUNE") {
            Ok(spec) => tuning.with_overrides(&spec).unwrap_or_else(|e| {
                tracing::warn!("{e}");
                tuning
            }),
            Err(_) => tuning,
        }
    }

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
                "tile_bm" => &mut self.tile_bm,
                "tile_bn" => &mut self.tile_bn,
                "tile_tm" => &mut self.tile_tm,
                "tile_tn" => &mut self.tile_tn,
                "norm_wg" => &mut self.norm_wg,
                "attn_wg" => &mut self.attn_wg,
                "attn_lanes_wg" => &mut self.attn_lanes_wg,
                "argmax_wg" => &mut self.argmax_wg,
                "attn_split_keys" => &mut self.attn_split_keys,
                "attn_max_splits" => &mut self.attn_max_splits,
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
