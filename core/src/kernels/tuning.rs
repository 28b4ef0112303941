//! Kernel shapes per tier. CPU adapters get whole rows per lane and register blocking;
//! GPUs get rows split across a subgroup's lanes. The numbers are starting points to be
//! replaced by measured per-vendor tables.

use crate::gpu::{Capabilities, GpuError, Reduce, Tier, Variant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Tuning {
    pub matvec_split: u32,
    pub matvec_rows: u32,
    pub matvec_wg: u32,
    /// Matvec reads x through a uniform binding where its rows fit one (64 KiB) and the
    /// activations are f32: on lavapipe a uniform array read at lane-varying indices is
    /// a plain gather, a storage array a bounds-checked branch per lane and component.
    /// GPUs serialise divergent uniform reads, so only CPU adapters take it.
    pub matvec_x_uniform: bool,
    /// Matrix-vector plans normalise the residual stream inside the products that read it
    /// (matvec's norm prologue: Q/K/V and gate/up) instead of in an `rmsnorm` pass.
    pub norm_prologue: bool,
    /// Matrix-vector plans gate the gate/up output inside the down product (matvec's gate
    /// prologue) instead of in a `glu` pass.
    pub gate_prologue: bool,
    /// Greedy steps' matrix-vector heads keep only each workgroup's largest row
    /// (matvec's argmax epilogue) instead of writing the logits for an `argmax` pass.
    pub head_argmax: bool,
    /// Steps of 2 to `few_tokens` tokens (small decode batches) run their own plan of
    /// matvecs whose lanes each carry `matvec_tb` tokens (0: no such plan, they run the
    /// prefill kernels below).
    pub few_tokens: u32,
    pub matvec_tb: u32,
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
    /// Tokens per lane of `matmul_tokens`: above 1, each dequantized chunk of weights
    /// serves that many tokens.
    pub tokens_tn: u32,
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
    /// What one more token adds to a step, in hundredths of a one-token step: the
    /// speculative decoding policy weighs drafts with it (`speculative::policy`).
    pub extra_token_cost: u32,
}

impl Tuning {
    pub fn new(variant: Variant, caps: &Capabilities) -> Tuning {
        match variant.tier {
            Tier::CpuLike => Tuning {
                matvec_split: 1,
                // Measured on lavapipe (Mesa 25, 256-bit; kernel_bench's BATCH=1 sweep):
                // each lane's activation loads serve 8 rows (2 and 4 rows were 1.1-1.6x
                // slower on 4096²). One SIMD register of lanes per workgroup: on the
                // 576- to 1536-wide matrices of small models, twice the workgroups of 16
                // lanes balance the threads better (10-25% faster; SmolLM2 tg64 +3-8%),
                // and 4096² is within noise.
                matvec_rows: 8,
                matvec_wg: caps.subgroup_min_size.clamp(8, 64).next_power_of_two(),
                matvec_x_uniform: true,
                // Measured on lavapipe (SmolLM2, step_profile and wisp bench tg64): the
                // norm in the Q/K/V and gate/up products saved the 60 rmsnorm passes
                // (6-9 ms of a 115 ms step) but added about as much to those products
                // (each lane gathers the gain beside x, and the squares): no faster,
                // within the noise. The gate in the down product decoded 25% slower: every
                // workgroup repeats the exponentials of all k inputs (the lanes are SIMD
                // slots: a vec4 gate is four SIMD exp each), which costs more than the pass
                // and the dispatch it saves.
                norm_prologue: false,
                gate_prologue: false,
                // Measured on lavapipe (SmolLM2, wisp bench tg64, six alternating pairs):
                // the LM head with the epilogue took 26.7 ms against 23.7 writing its
                // logits (the workgroup reduction costs more than the 196 KB it saves),
                // so the logits are written and read by the step's own argmax pass.
                head_argmax: false,
                // Measured on lavapipe (kernel_bench, q4_1 4096²): 4 tokens through
                // matvec with 2 per lane took 7.9 ms against 17.0 for matmul_tokens and
                // 10.3-10.7 with 1 or 4 per lane; at 8 tokens both took 15-17 ms. In
                // `wisp bench` (SmolLM2) batches of 5 and 6 decoded 19% and 28% faster
                // this way than through matmul_tokens, and 8 as fast.
                few_tokens: 8,
                matvec_tb: 2,
                matmul_tokens: true,
                tile_bm: 64,
                tile_bn: 32,
                tile_tm: 4,
                tile_tn: 2,
                // 32 rows share each lane's activation loads (measured best on lavapipe).
                tokens_rn: 32,
                // One SIMD register of lanes.
                tokens_wg: caps.subgroup_min_size.clamp(4, 64).next_power_of_two(),
                // Two tokens per lane share each dequantized chunk: 1.6-1.7x faster from
                // 16 to 64 tokens on lavapipe (kernel_bench, q4_1/q8_0/q6_k 4096²); four
                // gained 10-45% more at 64 tokens but lost 1.5x at 16.
                tokens_tn: 2,
                norm_wg: 64,
                attn_flash: false,
                attn_lanes: true,
                // Lanes are tokens: one SIMD register of them.
                attn_lanes_wg: caps.subgroup_min_size.clamp(4, 32).next_power_of_two(),
                attn_wg: 64,
                attn_split_keys: 256,
                attn_max_splits: 16,
                argmax_wg: 256,
                // Measured on lavapipe (`wisp bench -b 1,2,4,8`, SmolLM2): steps of 2, 4
                // and 8 tokens cost 1.27, 2.0 and 3.4 one-token steps.
                extra_token_cost: 30,
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
                    matvec_x_uniform: false,
                    // A GPU's decode is dispatch-bound (an H100 ran SmolLM2's 303 dispatches
                    // at about 8 µs each): both prologues save a dispatch per layer each,
                    // and their repeated work (the norm's squares, the gate's
                    // exponentials: k / matvec_split per lane) is small beside it.
                    norm_prologue: true,
                    gate_prologue: true,
                    // Not measured yet (no device): the epilogue spares writing and
                    // re-reading the logits (1 MB per row for Gemma 3's 262k vocabulary).
                    head_argmax: true,
                    few_tokens: 0,
                    matvec_tb: 1,
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
                    tokens_tn: 1,
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
                    // Decoding reads every weight once whatever the token count, until
                    // the step turns compute-bound: a few tokens are nearly free.
                    extra_token_cost: 3,
                }
            }
        }
    }
}

impl Tuning {
    /// Whether a step of `tokens` tokens runs the small-batch plan (`PlanTokens::Few`).
    pub fn small_batch(&self, tokens: u32) -> bool {
        tokens > 1 && tokens <= self.few_tokens
    }

    /// This tuning with `overrides` applied.
    pub fn with_overrides(mut self, overrides: &TuningOverrides) -> Tuning {
        for &(name, value) in &overrides.items {
            // Names were checked against the same list when parsed.
            if let Some(field) = tuning_field(&mut self, name) {
                field.set(value);
            }
        }
        self
    }
}

/// A field that overrides may set: numbers as given, switches from 0 or 1.
trait TuningValue {
    fn set(&mut self, value: u32);
}

impl TuningValue for u32 {
    fn set(&mut self, value: u32) {
        *self = value;
    }
}

impl TuningValue for bool {
    fn set(&mut self, value: u32) {
        *self = value != 0;
    }
}

/// One list of the fields overrides may name, so that parsing, applying and the error
/// message cannot disagree.
macro_rules! tuning_fields {
    ($first:ident $(, $field:ident)* $(,)?) => {
        /// The names of [`Tuning`]'s fields that overrides may set.
        pub const TUNING_FIELDS: &[&str] = &[stringify!($first) $(, stringify!($field))*];
        const TUNING_FIELD_LIST: &str = concat!(stringify!($first) $(, ", ", stringify!($field))*);

        fn tuning_field<'t>(t: &'t mut Tuning, name: &str) -> Option<&'t mut dyn TuningValue> {
            match name {
                stringify!($first) => Some(&mut t.$first),
                $(stringify!($field) => Some(&mut t.$field),)*
                _ => None,
            }
        }
    };
}

tuning_fields!(
    matvec_split,
    matvec_rows,
    matvec_wg,
    matvec_x_uniform,
    norm_prologue,
    gate_prologue,
    head_argmax,
    few_tokens,
    matvec_tb,
    matmul_tokens,
    tile_bm,
    tile_bn,
    tile_tm,
    tile_tn,
    tokens_rn,
    tokens_wg,
    tokens_tn,
    norm_wg,
    attn_flash,
    attn_lanes,
    attn_lanes_wg,
    attn_wg,
    attn_split_keys,
    attn_max_splits,
    argmax_wg,
    extra_token_cost,
);

/// Overrides of [`Tuning`]'s fields by name, for tuning experiments: `name=value` items
/// separated by commas (`matvec_split=8,matvec_rows=1`). The native crate reads them
/// from `WISP_TUNE`, the web page passes them as `tune`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TuningOverrides {
    items: Vec<(&'static str, u32)>,
}

impl TuningOverrides {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl std::str::FromStr for TuningOverrides {
    type Err = GpuError;

    /// Parses `name=value,…`; an error names the setting `tune` (callers rename it to
    /// what they read) and the item it could not take.
    fn from_str(spec: &str) -> Result<Self, GpuError> {
        let mut items = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || GpuError::InvalidSetting {
                name: "tune".into(),
                value: spec.to_string(),
                expected: format!(
                    "name=number items separated by commas, with names among \
                     {TUNING_FIELD_LIST} ({item:?} is not one)"
                ),
            };
            let (name, value) = item.split_once('=').ok_or_else(bad)?;
            let name = TUNING_FIELDS
                .iter()
                .find(|&&f| f == name.trim())
                .ok_or_else(bad)?;
            let value: u32 = value.trim().parse().map_err(|_| bad())?;
            items.push((*name, value));
        }
        Ok(TuningOverrides { items })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{Act, Capabilities};

    fn caps() -> Capabilities {
        Capabilities {
            shader_f16: true,
            subgroups: true,
            subgroup_min_size: 32,
            subgroup_max_size: 32,
            cpu_like: false,
            timestamp_queries: false,
            max_storage_binding: 1 << 30,
            max_buffer_size: 1 << 30,
            max_invocations_per_workgroup: 1024,
            max_workgroup_storage: 49152,
            max_workgroups_per_dimension: 65535,
            min_uniform_offset_alignment: 256,
            max_storage_buffers_per_stage: 16,
        }
    }

    fn gpu_tuning() -> Tuning {
        let variant = Variant {
            act: Act::F16,
            reduce: Reduce::Subgroup,
            tier: Tier::Gpu,
        };
        Tuning::new(variant, &caps())
    }

    #[test]
    fn every_field_can_be_overridden_by_name() {
        let json = serde_json::to_value(gpu_tuning()).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut named = TUNING_FIELDS.to_vec();
        fields.sort_unstable();
        named.sort_unstable();
        assert_eq!(fields, named);
    }

    #[test]
    fn overrides_set_numbers_and_switches() {
        let base = gpu_tuning();
        let o: TuningOverrides = " matvec_wg=64, attn_flash=0,,tile_bm = 16 "
            .parse()
            .unwrap();
        let t = base.with_overrides(&o);
        assert_eq!((t.matvec_wg, t.attn_flash, t.tile_bm), (64, false, 16));
        assert_eq!(
            Tuning {
                matvec_wg: base.matvec_wg,
                attn_flash: true,
                tile_bm: base.tile_bm,
                ..t
            },
            base
        );
        let none: TuningOverrides = "".parse().unwrap();
        assert!(none.is_empty());
        assert_eq!(base.with_overrides(&none), base);
    }

    #[test]
    fn a_bad_override_names_the_setting_and_what_it_accepts() {
        for spec in [
            "fast",
            "matvec_wg=64,no_such_field=3",
            "matvec_wg=-1",
            "matvec_wg",
        ] {
            let e = spec.parse::<TuningOverrides>().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("tune={spec} is not valid: expected ")),
                "{e}"
            );
            assert!(e.contains("matvec_split, matvec_rows"), "{e}");
        }
    }
}
