//! Kernel shapes per tier. CPU adapters get whole rows per lane and register blocking;
//! GPUs get rows split across a subgroup's lanes. The numbers are starting points to be
//! replaced by measured per-vendor tables.

use crate::gpu::{Capabilities, Reduce, Tier, Variant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tuning {
    pub matvec_split: u32,
    pub matvec_rows: u32,
    pub matvec_wg: u32,
    pub matmul_rt: u32,
    pub matmul_rn: u32,
    pub matmul_wg: u32,
    pub norm_wg: u32,
    pub attn_wg: u32,
    pub argmax_wg: u32,
}

impl Tuning {
    pub fn new(variant: Variant, caps: &Capabilities) -> Tuning {
        match variant.tier {
            Tier::CpuLike => Tuning {
                matvec_split: 1,
                matvec_rows: 2,
                matvec_wg: 64,
                matmul_rt: 4,
                matmul_rn: 2,
                matmul_wg: 64,
                norm_wg: 64,
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
                    matmul_rt: 4,
                    matmul_rn: 4,
                    matmul_wg: 64,
                    norm_wg: 256,
                    attn_wg: 64,
                    argmax_wg: 256,
                }
            }
        }
    }
}
