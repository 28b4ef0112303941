//! The Rust side of each GPU kernel: its parameter block (mirroring the WGSL struct),
//! its bindings, the defines of the chosen variant, and its grid. Each function adds
//! one kind of dispatch to a [`PlanBuilder`]. Bind group layouts and workgroup sizes
//! come from the composed WGSL (`gpu::Reflection`); [`interface`] says what each
//! function binds and checks it against that reflection whenever a pipeline is fetched.
//!
//! To add an op: write `shaders/wgsl/<op>.wgsl`, register its axes in
//! `shaders/src/kernels.rs`, declare its parameter block with `gpu_struct!` in
//! `params.rs`, add its bindings to [`interface::INTERFACES`] (the reflection test,
//! `cargo test -p wisp-core kernels::interface`, then checks every variant), add a
//! function here, and a CPU-reference test in `tests/tests/kernels.rs`.

pub mod interface;
mod kv_slot;
mod layout;
mod params;
mod probe;
mod step;
mod tuning;

pub use kv_slot::{Q8_KV_BLOCK_VALUES, Q8KvBlock, q8_slot_bytes};
pub use layout::{Field, GpuStruct, LayoutMismatch, RustLayout, compare};
pub use params::*;
pub use probe::{Bandwidth, streaming_read};
pub use step::*;
pub use tuning::{FlashTiles, TUNING_FIELDS, Tuning, TuningOverrides};

use crate::gpu::{
    Act, Count, Gpu, GpuError, Grid, KvType, Pipeline, PlanBuilder, QMatrix, StepUniform, Variant,
    gpu_weight_type,
};
use crate::model::{ExpertGating, Experts, FfnActivation};

/// What a matrix product does with its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// Store as activations (the variant's type).
    Act,
    /// Store as f32 (logits).
    F32,
    /// Add into an f32 buffer (the residual stream).
    AddF32,
    /// matvec only, the LM head for greedy sampling: per token, each workgroup's largest
    /// output and its row as an (index, bits) pair, `y_stride` =
    /// [`Kernels::argmax_slots`] pairs per token. [`Kernels::argmax`] with
    /// [`ArgmaxFrom::Pairs`] finishes them.
    Argmax,
}

impl Out {
    fn wgsl(self) -> &'static str {
        match self {
            Out::Act => "act",
            Out::F32 => "f32",
            Out::AddF32 => "f32_add",
            Out::Argmax => "argmax",
        }
    }
}

/// What a matvec computes its input from, in place of the pass that would otherwise
/// write it (`XIN` in `matvec.wgsl`): one dispatch fewer per fused pass. The
/// matrix-matrix kernels take `Plain` only.
#[derive(Clone, Copy, Debug)]
pub enum Prologue<'a> {
    /// x as it is.
    Plain,
    /// RMSNorm of x (f32 rows: the residual stream) times `weight`.
    RmsNorm { weight: &'a wgpu::Buffer, eps: f32 },
    /// gate(g) * u of x = [g | u], each half as wide as the matrix's rows (a fused
    /// gate/up product's output).
    Glu(FfnActivation),
}

impl Prologue<'_> {
    fn wgsl(self) -> String {
        match self {
            Prologue::Plain => "plain".into(),
            Prologue::RmsNorm { .. } => "rmsnorm".into(),
            Prologue::Glu(gate) => format!("glu_{}", gate_wgsl(gate)),
        }
    }

    /// The error of a kernel that has no such prologue.
    fn refused_by(self, kernel: &str) -> Result<(), GpuError> {
        match self {
            Prologue::Plain => Ok(()),
            other => Err(GpuError::Validation {
                what: kernel.into(),
                message: format!("no {} prologue (matvec has one)", other.wgsl()),
            }),
        }
    }
}

/// The gate's name in `common/gate.wgsl` (`GATE`).
fn gate_wgsl(gate: FfnActivation) -> &'static str {
    match gate {
        FfnActivation::Silu => "silu",
        FfnActivation::GeluTanh => "gelu_tanh",
    }
}

/// Where a matrix product reads and writes.
pub struct MatArgs<'a> {
    pub x: &'a wgpu::Buffer,
    /// Elements between consecutive tokens in x (a multiple of 4).
    pub x_stride: u32,
    pub y: &'a wgpu::Buffer,
    /// Elements between consecutive tokens in y.
    pub y_stride: u32,
    /// Column of y where row 0 of the matrix goes.
    pub y_offset: u32,
    pub out: Out,
    /// What x's rows are: the step's tokens, or its logits rows.
    pub rows: Count,
    /// What the product computes from x (matvec only).
    pub prologue: Prologue<'a>,
}

/// The attention kernels' inputs and outputs besides the cache: the step's queries,
/// the output, and the scratch for split-K partial results.
pub struct AttnIo<'a> {
    pub qkv: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
    /// `None` where no work item is ever split.
    pub partials: Option<&'a wgpu::Buffer>,
}

/// The paged KV cache of one layer as the attention kernels see it.
pub struct KvBindings<'a> {
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    /// The step metadata (positions, entries, block tables, logits rows).
    pub meta: &'a wgpu::Buffer,
    pub kv: KvType,
    /// Positions per pool block.
    pub block: u32,
}

/// Builds dispatches of the kernels in one variant for one device.
pub struct Kernels<'g> {
    pub gpu: &'g Gpu,
    pub variant: Variant,
    pub tuning: Tuning,
    /// Bound where a kernel declares a binding that this dispatch never reads (a bias
    /// the model lacks, split-K scratch without splits, a step uniform in a pass that
    /// has no step), so callers never make such buffers themselves.
    placeholder: wgpu::Buffer,
}

/// Bytes of the placeholder binding: at least any struct a kernel declares for a binding
/// it may leave unread (the step uniform) or one element of an array.
const PLACEHOLDER_BYTES: u64 = 256;

/// Bytes of matvec's x as a uniform binding (`array<act4, 4096>` in
/// `common/product.wgsl`, checked against it when the pipeline is fetched): 64 KiB,
/// WebGPU's guaranteed uniform binding size.
pub const X_UNIFORM_BYTES: u64 = 65536;

/// Query heads per workgroup of the `attention` kernel: the most, up to 8, that divide
/// the GQA ratio (so that a workgroup's heads share one KV head and read each key and
/// value once) and leave a token at least two workgroups (a CPU adapter runs each
/// workgroup on one core). SmolLM2: 3 of 9 heads, Qwen2.5 0.5B: 7 of 14, Gemma 3 270M:
/// 2 of 4.
fn heads_per_workgroup(p: &AttnParams) -> u32 {
    let ratio = p.n_head / p.n_kv_head.max(1);
    (1..=8)
        .rev()
        .find(|&g| ratio.is_multiple_of(g) && p.n_head / g >= 2)
        .unwrap_or(1)
}

/// A buffer that matrix products read as x (or matvec's norm prologue as its gain):
/// bindable as a uniform too. Where `uniform_x` (the tuning's `matvec_x_uniform`: CPU
/// adapters), it is at least [`X_UNIFORM_BYTES`] where storage bindings are well above
/// that (all but tests' artificial limits), so that matvec can take its uniform x
/// whatever the batch size; elsewhere it keeps its own size.
pub async fn product_input(
    gpu: &Gpu,
    what: &str,
    bytes: u64,
    uniform_x: bool,
) -> Result<wgpu::Buffer, GpuError> {
    let size = if uniform_x && gpu.caps.max_storage_binding >= 2 * X_UNIFORM_BYTES {
        bytes.max(X_UNIFORM_BYTES)
    } else {
        bytes
    };
    gpu.storage_also(what, size, wgpu::BufferUsages::UNIFORM)
        .await
}

fn placeholder(gpu: &Gpu) -> wgpu::Buffer {
    // Never read or written: its contents do not matter, and it is too small to need
    // the out-of-memory checks of `Gpu::storage`.
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("placeholder binding"),
        size: PLACEHOLDER_BYTES,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
        mapped_at_creation: false,
    })
}

/// What [`Kernels::argmax`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgmaxFrom {
    /// Rows of logits.
    Logits,
    /// Rows of (index, bits) pairs from matvec's argmax epilogue.
    Pairs,
}

impl ArgmaxFrom {
    fn wgsl(self) -> &'static str {
        match self {
            ArgmaxFrom::Logits => "logits",
            ArgmaxFrom::Pairs => "pairs",
        }
    }
}

/// Checks what matvec's argmax epilogue assumes: `y_stride` holds a slot for every
/// workgroup of the matrix's rows, from slot 0, and each buffer of the matrix starts on
/// a workgroup's first row (its slots follow on from the buffer before).
fn argmax_slots_fit(
    pipe: &Pipeline,
    w: &QMatrix,
    a: &MatArgs<'_>,
    rows_per_wg: u32,
) -> Result<(), GpuError> {
    let refuse = |message: String| {
        Err(GpuError::Shader {
            kernel: pipe.label.clone(),
            message,
        })
    };
    let slots = w.n.div_ceil(rows_per_wg);
    if a.y_stride != slots || a.y_offset != 0 {
        return refuse(format!(
            "the argmax epilogue over {} rows needs {slots} slots per token from column 0; \
             it was given {} from column {}",
            w.n, a.y_stride, a.y_offset
        ));
    }
    if let Some(c) = misaligned_chunk(w, rows_per_wg) {
        return refuse(format!(
            "{}'s buffer from row {} does not start on a multiple of {rows_per_wg} rows",
            w.name, c.first_row
        ));
    }
    Ok(())
}

/// The first buffer of `w` that does not start on a multiple of `rows` rows.
fn misaligned_chunk(w: &QMatrix, rows: u32) -> Option<&crate::gpu::MatrixChunk> {
    w.chunks.iter().find(|c| c.first_row % rows != 0)
}

fn mat_params(w: &QMatrix, chunk: &crate::gpu::MatrixChunk, a: &MatArgs<'_>) -> MatParams {
    MatParams {
        k: w.k,
        n: chunk.n_rows,
        row_bytes: w.row_bytes,
        out_offset: a.y_offset + chunk.first_row,
        x_stride: a.x_stride / 4,
        y_stride: a.y_stride,
        per_row: u32::from(a.rows == Count::Rows),
        eps: match a.prologue {
            Prologue::RmsNorm { eps, .. } => eps,
            _ => 0.0,
        },
    }
}

/// Lanes along x of a pipeline's workgroup, as compiled: what grids divide work by, so
/// the WG define is written once (in the defines) and never again in grid arithmetic.
fn lanes(pipe: &Pipeline) -> u32 {
    pipe.workgroup_size()[0]
}

fn weight_type(m: &QMatrix) -> Result<&'static str, GpuError> {
    gpu_weight_type(m.ty).ok_or_else(|| GpuError::Shader {
        kernel: m.name.clone(),
        message: format!("no GPU kernel for tensor type {}", m.ty),
    })
}

/// How many tokens the steps of a plan usually hold, for kernels whose best shape depends
/// on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanTokens {
    /// One decoded token per sequence (`layers_single`).
    One,
    /// A small decode batch, 2 to `Tuning::few_tokens` tokens (`FewPlans`).
    Few,
    /// Many: prefill chunks and batched decoding (`layers_batched`).
    Many,
}

impl<'g> Kernels<'g> {
    /// With the tier's tuning for the adapter.
    pub fn new(gpu: &'g Gpu, variant: Variant) -> Self {
        Kernels {
            gpu,
            variant,
            tuning: Tuning::new(variant, &gpu.caps),
            placeholder: placeholder(gpu),
        }
    }

    /// With a given tuning (tests and tuning sweeps).
    pub fn with_tuning(gpu: &'g Gpu, variant: Variant, tuning: Tuning) -> Self {
        Kernels {
            gpu,
            variant,
            tuning,
            placeholder: placeholder(gpu),
        }
    }

    /// A plan builder for dispatches that read no per-step values (the sampling tail):
    /// their kernels declare no step uniform, and the builder's is a placeholder.
    pub fn stepless_plan(&self) -> PlanBuilder {
        PlanBuilder::new(self.gpu, self.placeholder.clone())
    }

    fn act(&self) -> String {
        self.variant.act.wgsl().to_string()
    }

    fn reduce(&self) -> String {
        self.variant.reduce.wgsl().to_string()
    }

    /// The pipeline of `kernel` in this variant; its bind group layout and workgroup
    /// size come from the composed WGSL.
    async fn pipeline(
        &self,
        kernel: &str,
        defines: &[(&str, String)],
    ) -> Result<std::sync::Arc<Pipeline>, GpuError> {
        let pipe = self
            .gpu
            .pipelines
            .get(&self.gpu.device, kernel, defines)
            .await?;
        let pairs: Vec<(&str, &str)> = defines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        // A kernel whose WGSL and Rust sides disagree fails here, at load, rather than
        // computing with misplaced parameters.
        interface::check(kernel, &pairs, &pipe.interface).map_err(|e| GpuError::Shader {
            kernel: pipe.label.clone(),
            message: e.to_string(),
        })?;
        Ok(pipe)
    }

    fn max_dim(&self) -> u32 {
        self.gpu.caps.max_workgroups_per_dimension
    }

    /// y (+)= W x for each row of x (decode-shaped: every lane group streams whole
    /// weight rows once per row of x).
    pub async fn matvec(
        &self,
        b: &mut PlanBuilder,
        w: &QMatrix,
        a: &MatArgs<'_>,
    ) -> Result<(), GpuError> {
        self.matvec_tokens(b, w, a, 1, 1).await
    }

    /// [`Self::matvec`] for a small batch: each lane takes every dequantized chunk of
    /// weights through `Tuning::matvec_tb` tokens.
    pub async fn matvec_batch(
        &self,
        b: &mut PlanBuilder,
        w: &QMatrix,
        a: &MatArgs<'_>,
    ) -> Result<(), GpuError> {
        let t = &self.tuning;
        self.matvec_tokens(b, w, a, t.matvec_tb, t.few_tokens.max(2))
            .await
    }

    /// Whether matvec reads x through a uniform binding (`XBIND=uniform`, see
    /// `Tuning::matvec_x_uniform`): f32 values (activations, or the residual stream the
    /// norm prologue reads) in a buffer that may be bound as uniform, and x's rows for
    /// up to `max_rows` tokens within the binding.
    /// The norm prologue's gain goes through a uniform binding with x: it must be
    /// bindable as one too.
    fn x_uniform(&self, a: &MatArgs<'_>, max_rows: u32) -> bool {
        let bytes = u64::from(max_rows) * u64::from(a.x_stride) * 4;
        let uniform_bindable = |b: &wgpu::Buffer| {
            b.usage().contains(wgpu::BufferUsages::UNIFORM) && b.size() >= X_UNIFORM_BYTES
        };
        let (x_is_f32, gain_fits) = match a.prologue {
            Prologue::RmsNorm { weight, .. } => (true, uniform_bindable(weight)),
            _ => (self.variant.act == Act::F32, true),
        };
        self.tuning.matvec_x_uniform
            && x_is_f32
            && gain_fits
            && uniform_bindable(a.x)
            && bytes <= X_UNIFORM_BYTES
            && self.gpu.device.limits().max_uniform_buffer_binding_size >= X_UNIFORM_BYTES
    }

    /// `max_rows`: the most rows of x a step of the plan holds (its tokens, or its
    /// logits rows).
    async fn matvec_tokens(
        &self,
        b: &mut PlanBuilder,
        w: &QMatrix,
        a: &MatArgs<'_>,
        tokens_per_lane: u32,
        max_rows: u32,
    ) -> Result<(), GpuError> {
        let t = &self.tuning;
        // The reduction kind only matters when lanes split a row.
        let reduce = if t.matvec_split > 1 {
            self.reduce()
        } else {
            "workgroup".into()
        };
        let xbind = if self.x_uniform(a, max_rows) {
            "uniform"
        } else {
            "storage"
        };
        let defines = [
            ("WTYPE", weight_type(w)?.to_string()),
            ("ACT", self.act()),
            ("OUT", a.out.wgsl().to_string()),
            ("REDUCE", reduce),
            ("SPLIT", t.matvec_split.to_string()),
            ("ROWS", t.matvec_rows.to_string()),
            ("TB", tokens_per_lane.to_string()),
            ("WG", t.matvec_wg.to_string()),
            ("XBIND", xbind.to_string()),
            ("XIN", a.prologue.wgsl()),
        ];
        let pipe = self.pipeline("matvec", &defines).await?;
        if xbind == "uniform" && pipe.interface.bindings[3].min_size != X_UNIFORM_BYTES {
            return Err(GpuError::Shader {
                kernel: pipe.label.clone(),
                message: format!(
                    "a uniform x holds {} bytes in the WGSL, {X_UNIFORM_BYTES} on the Rust side",
                    pipe.interface.bindings[3].min_size
                ),
            });
        }
        let norm_weight = match a.prologue {
            Prologue::RmsNorm { weight, .. } => weight,
            _ => &self.placeholder,
        };
        let rows_per_wg = lanes(&pipe) / t.matvec_split * t.matvec_rows;
        if a.out == Out::Argmax {
            argmax_slots_fit(&pipe, w, a, rows_per_wg)?;
        }
        for chunk in &w.chunks {
            let params = mat_params(w, chunk, a);
            let grid = Grid::rows(
                chunk.n_rows.div_ceil(rows_per_wg),
                self.max_dim(),
                Some((a.rows, tokens_per_lane)),
            );
            b.add(
                pipe.clone(),
                Some(bytemuck::bytes_of(&params)),
                StepUniform::Bound,
                &[&chunk.buffer, a.x, a.y, norm_weight],
                grid,
            );
        }
        Ok(())
    }

    /// y (+)= W x for all tokens of the step (prefill-shaped), with the kernel the
    /// tuning picks: lanes over rows (register-blocked) or lanes over tokens.
    pub async fn matmul(
        &self,
        b: &mut PlanBuilder,
        w: &QMatrix,
        a: &MatArgs<'_>,
    ) -> Result<(), GpuError> {
        a.prologue.refused_by("matmul")?;
        let t = &self.tuning;
        let common = [
            ("WTYPE", weight_type(w)?.to_string()),
            ("ACT", self.act()),
            ("OUT", a.out.wgsl().to_string()),
        ];
        let (pipe, rows_per_wg, tokens_per_wg) = if t.matmul_tokens {
            let defines = [
                common.as_slice(),
                &[
                    ("RN", t.tokens_rn.to_string()),
                    ("TN", t.tokens_tn.to_string()),
                    ("WG", t.tokens_wg.to_string()),
                ],
            ]
            .concat();
            let pipe = self.pipeline("matmul_tokens", &defines).await?;
            let tokens = lanes(&pipe) * t.tokens_tn;
            (pipe, t.tokens_rn, tokens)
        } else {
            let tile = [
                ("BM", t.tile_bm.to_string()),
                ("BN", t.tile_bn.to_string()),
                ("TM", t.tile_tm.to_string()),
                ("TN", t.tile_tn.to_string()),
            ];
            let defines = [common.as_slice(), &tile].concat();
            (
                self.pipeline("matmul_tiled", &defines).await?,
                t.tile_bm,
                t.tile_bn,
            )
        };
        for chunk in &w.chunks {
            let params = mat_params(w, chunk, a);
            let grid = Grid::rows(
                chunk.n_rows.div_ceil(rows_per_wg),
                self.max_dim(),
                Some((a.rows, tokens_per_wg)),
            );
            b.add(
                pipe.clone(),
                Some(bytemuck::bytes_of(&params)),
                StepUniform::Bound,
                &[&chunk.buffer, a.x, a.y],
                grid,
            );
        }
        Ok(())
    }

    /// x[t, :] = scale * E[tokens[t], :] into the f32 residual stream.
    pub async fn embed(
        &self,
        b: &mut PlanBuilder,
        table: &QMatrix,
        tokens: &wgpu::Buffer,
        x: &wgpu::Buffer,
        scale: f32,
    ) -> Result<(), GpuError> {
        let defines = [
            ("WTYPE", weight_type(table)?.to_string()),
            ("WG", "64".to_string()),
        ];
        let pipe = self.pipeline("embed", &defines).await?;
        for chunk in &table.chunks {
            let params = EmbedParams {
                k: table.k,
                row_bytes: table.row_bytes,
                row_offset: chunk.first_row,
                n_rows: chunk.n_rows,
                scale,
                _pad: [0; 3],
            };
            let grid = Grid::scaled([1, 1, 1], 0, Count::Tokens, 1);
            b.add(
                pipe.clone(),
                Some(bytemuck::bytes_of(&params)),
                StepUniform::Bound,
                &[&chunk.buffer, tokens, x],
                grid,
            );
        }
        Ok(())
    }

    /// RMSNorm of f32 rows: each token's, or with `p.listed` the tokens whose logits the
    /// step wants (listed in `meta`) into consecutive rows. `Out::Act` writes
    /// activations (pre-norms); `Out::AddF32` adds into f32 rows (a post-norm block's
    /// output joining the residual stream); the kernel has no `Out::F32`.
    #[allow(clippy::too_many_arguments)]
    pub async fn rmsnorm(
        &self,
        b: &mut PlanBuilder,
        p: &NormParams,
        x: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        y: &wgpu::Buffer,
        meta: &wgpu::Buffer,
        out: Out,
    ) -> Result<(), GpuError> {
        let defines = [
            ("ACT", self.act()),
            ("REDUCE", self.reduce()),
            ("OUT", out.wgsl().to_string()),
            ("WG", self.tuning.norm_wg.to_string()),
        ];
        let pipe = self.pipeline("rmsnorm", &defines).await?;
        let count = if p.listed != 0 {
            Count::Rows
        } else {
            Count::Tokens
        };
        b.add(
            pipe,
            Some(bytemuck::bytes_of(p)),
            StepUniform::Bound,
            &[x, weight, y, meta],
            Grid::scaled([1, 1, 1], 0, count, 1),
        );
        Ok(())
    }

    /// QK-norm: RMSNorm of each query and key head in place, with `weight` holding the
    /// query norm then the key norm.
    /// QK-norm of the step's query and key heads, in place. With `bias` (a QKV bias, which
    /// comes before the norm) its query and key parts are added first; `p.has_bias` is set
    /// from it.
    pub async fn head_norm(
        &self,
        b: &mut PlanBuilder,
        p: &HeadNormParams,
        qkv: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
    ) -> Result<(), GpuError> {
        let p = &HeadNormParams {
            has_bias: u32::from(bias.is_some()),
            ..*p
        };
        let bias = bias.unwrap_or(&self.placeholder);
        let wg = if p.head_dim >= 64 { 64 } else { 32 };
        let defines = [
            ("ACT", self.act()),
            ("REDUCE", self.reduce()),
            ("WG", wg.to_string()),
        ];
        let pipe = self.pipeline("head_norm", &defines).await?;
        let grid = Grid::scaled([p.n_head + p.n_kv_head, 1, 1], 1, Count::Tokens, 1);
        b.add(
            pipe,
            Some(bytemuck::bytes_of(p)),
            StepUniform::Bound,
            &[qkv, weight, bias],
            grid,
        );
        Ok(())
    }

    /// RoPE on the step's queries and keys (after adding `bias` if there is one, from
    /// column `p.bias_start` on); keys and values into the paged cache. Without `bias`
    /// nothing is added, whatever `p.bias_start` says.
    pub async fn rope_kv(
        &self,
        b: &mut PlanBuilder,
        p: &RopeParams,
        qkv: &wgpu::Buffer,
        kv: &KvBindings<'_>,
        inv_freq: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
    ) -> Result<(), GpuError> {
        let p = &RopeParams {
            bias_start: if bias.is_some() {
                p.bias_start
            } else {
                p.qkv_stride
            },
            ..*p
        };
        let bias = bias.unwrap_or(&self.placeholder);
        let defines = [
            ("ACT", self.act()),
            ("KV", kv.kv.wgsl().to_string()),
            ("BLOCK", kv.block.to_string()),
            ("WG", "64".to_string()),
        ];
        let pipe = self.pipeline("rope_kv", &defines).await?;
        let work = (p.n_head + 2 * p.n_kv_head) * (p.head_dim / 2);
        let grid = Grid::scaled([work.div_ceil(lanes(&pipe)), 1, 1], 1, Count::Tokens, 1);
        b.add(
            pipe,
            Some(bytemuck::bytes_of(p)),
            StepUniform::Bound,
            &[qkv, kv.k, kv.v, inv_freq, kv.meta, bias],
            grid,
        );
        Ok(())
    }

    /// Causal attention of the step's queries over the paged cache. `tokens` says what
    /// the step usually holds: many tokens (prefill) take the query-per-lane kernel on
    /// CPU-like adapters; a single decoded token is better served by spreading its keys
    /// over the lanes.
    pub async fn attention(
        &self,
        b: &mut PlanBuilder,
        p: &AttnParams,
        tokens: PlanTokens,
        qkv: &wgpu::Buffer,
        kv: &KvBindings<'_>,
        out: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let storage = [
            ("ACT", self.act()),
            ("KV", kv.kv.wgsl().to_string()),
            ("BLOCK", kv.block.to_string()),
        ];
        let hd = ("HD", p.head_dim.to_string());
        let (pipe, grid) = if self.tuning.attn_lanes && tokens != PlanTokens::One {
            let wg = self.tuning.attn_lanes_wg.to_string();
            let defines = [storage.as_slice(), &[hd, ("WG", wg)]].concat();
            let pipe = self.pipeline("attention_lanes", &defines).await?;
            // A query per lane.
            let grid = Grid::scaled([p.n_head, 1, 1], 1, Count::Tokens, lanes(&pipe));
            (pipe, grid)
        } else {
            let g = heads_per_workgroup(p);
            let defines = [
                storage.as_slice(),
                &[
                    ("REDUCE", self.reduce()),
                    hd,
                    ("WG", self.tuning.attn_wg.to_string()),
                    ("G", g.to_string()),
                ],
            ]
            .concat();
            (
                self.pipeline("attention", &defines).await?,
                Grid::scaled([p.n_head / g, 1, 1], 1, Count::Tokens, 1),
            )
        };
        b.add(
            pipe,
            Some(bytemuck::bytes_of(p)),
            StepUniform::Bound,
            &[qkv, kv.k, kv.v, out, kv.meta],
            grid,
        );
        Ok(())
    }

    /// FlashAttention-2 over the step's work items (query tiles and key splits), for
    /// GPUs; split items leave partial results in `partials` for [`Kernels::flash_reduce`].
    pub async fn flash_attention(
        &self,
        b: &mut PlanBuilder,
        p: &AttnParams,
        tiles: FlashTiles,
        io: &AttnIo<'_>,
        kv: &KvBindings<'_>,
    ) -> Result<(), GpuError> {
        let (qkv, out) = (io.qkv, io.out);
        let partials = io.partials.unwrap_or(&self.placeholder);
        let defines = [
            ("ACT", self.act()),
            ("KV", kv.kv.wgsl().to_string()),
            ("BLOCK", kv.block.to_string()),
            ("HD", p.head_dim.to_string()),
            ("BQ", tiles.bq.to_string()),
            ("BK", tiles.bk.to_string()),
            ("L", tiles.lanes.to_string()),
        ];
        let pipe = self.pipeline("flash_attn", &defines).await?;
        let grid = Grid::scaled([1, p.n_head, 1], 0, Count::Work, 1);
        b.add(
            pipe,
            Some(bytemuck::bytes_of(p)),
            StepUniform::Bound,
            &[qkv, kv.k, kv.v, out, kv.meta, partials],
            grid,
        );
        Ok(())
    }

    /// Merges split-K partial results into the attention output.
    pub async fn flash_reduce(
        &self,
        b: &mut PlanBuilder,
        p: &AttnParams,
        partials: &wgpu::Buffer,
        out: &wgpu::Buffer,
        meta: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let defines = [
            ("ACT", self.act()),
            ("HD", p.head_dim.to_string()),
            ("WG", "64".to_string()),
        ];
        let pipe = self.pipeline("flash_reduce", &defines).await?;
        let grid = Grid::scaled([1, p.n_head, 1], 0, Count::Reduce, 1);
        b.add(
            pipe,
            Some(bytemuck::bytes_of(p)),
            StepUniform::Bound,
            &[partials, out, meta],
            grid,
        );
        Ok(())
    }

    /// h = gate(g) * u from the fused gate/up output, one row per token.
    pub async fn glu(
        &self,
        b: &mut PlanBuilder,
        gate: FfnActivation,
        gu: &wgpu::Buffer,
        h: &wgpu::Buffer,
        n: u32,
    ) -> Result<(), GpuError> {
        self.glu_rows(b, gate, gu, h, n, 1).await
    }

    /// The same with `per_token` rows per token (a mixture of experts' chosen experts).
    pub async fn glu_rows(
        &self,
        b: &mut PlanBuilder,
        gate: FfnActivation,
        gu: &wgpu::Buffer,
        h: &wgpu::Buffer,
        n: u32,
        per_token: u32,
    ) -> Result<(), GpuError> {
        let defines = [
            ("ACT", self.act()),
            ("GATE", gate_wgsl(gate).to_string()),
            ("WG", "64".to_string()),
        ];
        let pipe = self.pipeline("glu", &defines).await?;
        let params = GluParams {
            n,
            per_token,
            _pad: [0; 2],
        };
        let grid = Grid::scaled(
            [n.div_ceil(lanes(&pipe)), per_token, 1],
            2,
            Count::Tokens,
            1,
        );
        b.add(
            pipe,
            Some(bytemuck::bytes_of(&params)),
            StepUniform::Bound,
            &[gu, h],
            grid,
        );
        Ok(())
    }

    /// Mixture-of-experts routing: each token's router scores (f32 [tokens, n_expert])
    /// become its chosen experts and their weights in `routes`.
    pub async fn moe_route(
        &self,
        b: &mut PlanBuilder,
        experts: &Experts,
        scores: &wgpu::Buffer,
        routes: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let gating = match experts.gating {
            ExpertGating::Softmax => "softmax",
            ExpertGating::Sigmoid => "sigmoid",
        };
        let defines = [("GATING", gating.to_string()), ("WG", "64".to_string())];
        let pipe = self.pipeline("moe_route", &defines).await?;
        let params = MoeRouteParams {
            n_expert: experts.n_expert,
            n_used: experts.n_used,
            normalize: u32::from(experts.normalize),
            scale: experts.scale,
        };
        // A token per lane.
        let grid = Grid::scaled([1, 1, 1], 0, Count::Tokens, lanes(&pipe));
        b.add(
            pipe,
            Some(bytemuck::bytes_of(&params)),
            StepUniform::Bound,
            &[scores, routes],
            grid,
        );
        Ok(())
    }

    /// y[slot] = W_e x[token or slot] for the token slots `routes` sends to `expert`
    /// (one dispatch per chunk of the expert's matrix; other slots return at once).
    /// `a.rows` is unused: the grid covers every slot of the step's tokens.
    pub async fn moe_matvec(
        &self,
        b: &mut PlanBuilder,
        w: &QMatrix,
        a: &MatArgs<'_>,
        route: &wgpu::Buffer,
        routes: &wgpu::Buffer,
        n_used: u32,
    ) -> Result<(), GpuError> {
        a.prologue.refused_by("moe_matvec")?;
        let defines = [
            ("WTYPE", weight_type(w)?.to_string()),
            ("ACT", self.act()),
            ("OUT", a.out.wgsl().to_string()),
            ("WG", "64".to_string()),
        ];
        let pipe = self.pipeline("moe_matvec", &defines).await?;
        let wg = lanes(&pipe);
        for chunk in &w.chunks {
            let params = mat_params(w, chunk, a);
            let blocks = chunk.n_rows.div_ceil(wg);
            let x = blocks.min(self.max_dim());
            let grid = Grid::scaled([x, blocks.div_ceil(x), 1], 2, Count::Tokens, 1);
            // z counts tokens; each token has n_used slots.
            let grid = grid.times(n_used);
            b.add(
                pipe.clone(),
                Some(bytemuck::bytes_of(&params)),
                StepUniform::Bound,
                &[&chunk.buffer, a.x, a.y, route, routes],
                grid,
            );
        }
        Ok(())
    }

    /// x[t] += the chosen experts' outputs (f32 [tokens n_used, n]) weighted by `routes`.
    pub async fn moe_combine(
        &self,
        b: &mut PlanBuilder,
        y: &wgpu::Buffer,
        routes: &wgpu::Buffer,
        x: &wgpu::Buffer,
        n: u32,
        n_used: u32,
    ) -> Result<(), GpuError> {
        let pipe = self
            .pipeline("moe_combine", &[("WG", "64".to_string())])
            .await?;
        let params = MoeCombineParams {
            n,
            n_used,
            _pad: [0; 2],
        };
        let grid = Grid::scaled([n.div_ceil(lanes(&pipe)), 1, 1], 1, Count::Tokens, 1);
        b.add(
            pipe,
            Some(bytemuck::bytes_of(&params)),
            StepUniform::Bound,
            &[y, routes, x],
            grid,
        );
        Ok(())
    }

    /// The (index, bits) pairs per token that matvec's argmax epilogue ([`Out::Argmax`])
    /// writes over `n` rows: one per workgroup of rows.
    pub fn argmax_slots(&self, n: u32) -> u32 {
        n.div_ceil(self.matvec_rows_per_wg())
    }

    /// Whether matvec's argmax epilogue can run over `w`: every buffer of it starts on a
    /// workgroup's first row (a matrix split under a tiny binding limit may not).
    pub fn argmax_fits(&self, w: &QMatrix) -> bool {
        misaligned_chunk(w, self.matvec_rows_per_wg()).is_none()
    }

    /// The rows one matvec workgroup covers, as the tuning's defines make it.
    fn matvec_rows_per_wg(&self) -> u32 {
        let t = &self.tuning;
        t.matvec_wg / t.matvec_split * t.matvec_rows
    }

    /// For each row of `n` entries of `input` (logits, or the pairs of matvec's argmax
    /// epilogue): result[2 row ..] = (index, bits) of the largest.
    pub async fn argmax(
        &self,
        b: &mut PlanBuilder,
        from: ArgmaxFrom,
        input: &wgpu::Buffer,
        result: &wgpu::Buffer,
        n: u32,
    ) -> Result<(), GpuError> {
        let defines = [
            ("REDUCE", self.reduce()),
            ("FROM", from.wgsl().to_string()),
            ("WG", self.tuning.argmax_wg.to_string()),
        ];
        let pipe = self.pipeline("argmax", &defines).await?;
        let params = ArgmaxParams { n, _pad: [0; 3] };
        b.add(
            pipe,
            Some(bytemuck::bytes_of(&params)),
            StepUniform::NotBound,
            &[input, result],
            Grid::scaled([1, 1, 1], 0, Count::Rows, 1),
        );
        Ok(())
    }

    /// Penalties on the logits. `params` is a uniform the caller rewrites each step
    /// with a [`PenaltyParams`]; `entries` holds (token, count, row, 0) and `row_params`
    /// each row's (repeat, frequency, presence, cutoff).
    pub async fn penalties(
        &self,
        b: &mut PlanBuilder,
        params: &wgpu::Buffer,
        entries: &wgpu::Buffer,
        row_params: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        max_entries: u32,
    ) -> Result<(), GpuError> {
        let pipe = self.pipeline("penalties", &[]).await?;
        let grid = Grid::fixed(max_entries.div_ceil(lanes(&pipe)).max(1), 1, 1);
        b.add(
            pipe,
            None,
            StepUniform::NotBound,
            &[params, entries, row_params, logits],
            grid,
        );
        Ok(())
    }

    /// The sampling candidates of each row; `params` is a uniform holding a
    /// [`CandidateParams`], `row_params` each row's cutoff in its last component.
    pub async fn candidates(
        &self,
        b: &mut PlanBuilder,
        params: &wgpu::Buffer,
        row_params: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let defines = [
            ("REDUCE", self.reduce()),
            ("WG", self.tuning.argmax_wg.to_string()),
        ];
        let pipe = self.pipeline("candidates", &defines).await?;
        b.add(
            pipe,
            None,
            StepUniform::NotBound,
            &[params, row_params, logits, out],
            Grid::scaled([1, 1, 1], 0, Count::Rows, 1),
        );
        Ok(())
    }

    /// A streaming read of `data` (`vec4s` of 16 bytes), for measuring bandwidth.
    pub async fn bandwidth(
        &self,
        b: &mut PlanBuilder,
        data: &wgpu::Buffer,
        sink: &wgpu::Buffer,
        vec4s: u32,
    ) -> Result<(), GpuError> {
        let pipe = self
            .pipeline("bandwidth", &[("WG", "256".to_string())])
            .await?;
        let wg = lanes(&pipe);
        // Enough workgroups to fill any device, each streaming a contiguous range.
        let groups = (vec4s / (wg * 16)).clamp(1, 4096);
        let params = BandwidthParams {
            n: vec4s,
            per_group: vec4s.div_ceil(groups),
            _pad: [0; 2],
        };
        b.add(
            pipe,
            Some(bytemuck::bytes_of(&params)),
            StepUniform::NotBound,
            &[data, sink],
            Grid::rows(groups, self.max_dim(), None),
        );
        Ok(())
    }

    /// Bytes per activation element in this variant.
    pub fn act_size(&self) -> u64 {
        match self.variant.act {
            Act::F32 => 4,
            Act::F16 => 2,
        }
    }
}
