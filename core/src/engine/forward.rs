//! The forward pass, recorded once as dispatch lists. One transformer block serves every
//! architecture; its options (`model::ArchOptions`) add a QKV bias, QK-norm, post-norms,
//! the gate's nonlinearity, embedding scaling and per-layer windows and RoPE bases.
//! The lists:
//! - `layers_single`: embedding and every transformer block for a step of one token
//!   (decode: matrix-vector kernels);
//! - `layers_batched`: the same for a step of many tokens, from one or several
//!   sequences (prefill chunks and batched decoding: matrix-matrix kernels);
//! - `head_one` / `head_many`: final norm and LM head for the step's wanted rows (one
//!   row: matrix-vector; several: matrix-matrix);
//! - `few` (where the tuning asks for it, CPU adapters): layers and head for small
//!   decode batches of 2 to `Tuning::few_tokens` tokens, matrix-vector kernels whose
//!   lanes each carry several tokens.
//!
//! - `draft` (when the engine was loaded with a self-drafting depth): the embedding and
//!   the first layers only, in the same three sizes, for layer-skip speculative drafts;
//!   the head lists above finish them.
//!
//! A step encodes a layers list and, when it wants logits, a head list into one compute
//! pass. Positions and KV-cache slots come from the step metadata, so the same lists
//! serve any mix of sequences.

use crate::gpu::{Count, Gpu, GpuError, Plan, PlanBuilder, QMatrix, Variant};
use crate::kernels::{
    ArgmaxFrom, AttnIo, AttnParams, FlashTiles, HeadNormParams, Kernels, KvBindings, MatArgs,
    NormParams, Out, PlanTokens, Prologue, RopeParams, Tuning,
};
use crate::kv::KvPool;
use crate::model::{FeedForward, Fused, ModelConfig, ModelWeights, RopeStyle};
use crate::sampling::SamplerConfig;

use super::activations::Activations;

pub struct ForwardPlans {
    pub layers_single: Plan,
    pub layers_batched: Plan,
    /// For steps of 2 to `few_tokens` tokens, where the tuning asks for them.
    pub few: Option<FewPlans>,
    pub head_one: Heads,
    pub head_many: Heads,
    /// The argmax epilogue's (index, bits) pairs for the matrix-vector heads, [rows,
    /// slots, 2].
    _head_pairs: wgpu::Buffer,
    /// The first layers only, for self-drafting.
    pub draft: Option<DraftPlans>,
    /// RoPE inverse frequencies, one buffer per distinct table (read by the recorded
    /// dispatches).
    _inv_freq: Vec<wgpu::Buffer>,
}

/// The layers and head for small decode batches (`PlanTokens::Few`).
pub struct FewPlans {
    /// The tuning they were recorded with: it says which steps run them.
    pub tuning: Tuning,
    pub layers: Plan,
    pub head: Heads,
}

/// What a step's LM head leaves for sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HeadOutput {
    /// The logits of every wanted row, for any sampler, logprobs and tools.
    #[default]
    Logits,
    /// Only each wanted row's argmax (`Activations::argmax`), enough for greedy sampling
    /// without penalties. Where the head is a matrix-vector product its logits are never
    /// written: its workgroups keep their largest rows (`OUT = argmax`) and one pass
    /// picks each row's largest of those.
    Argmax,
}

impl HeadOutput {
    /// The least a step's rows need: the argmax where every row's sampler takes the
    /// largest raw logit, the logits otherwise (and for no rows).
    pub fn needed_by<'a>(samplers: impl IntoIterator<Item = &'a SamplerConfig>) -> HeadOutput {
        let mut samplers = samplers.into_iter().peekable();
        if samplers.peek().is_some() && samplers.all(SamplerConfig::argmax_suffices) {
            HeadOutput::Argmax
        } else {
            HeadOutput::Logits
        }
    }
}

/// One head plan per [`HeadOutput`].
pub struct Heads {
    pub logits: Plan,
    pub argmax: Plan,
}

impl Heads {
    pub fn get(&self, output: HeadOutput) -> &Plan {
        match output {
            HeadOutput::Logits => &self.logits,
            HeadOutput::Argmax => &self.argmax,
        }
    }
}

/// The embedding and the first `layers` layers, for drafting steps of one token, a few
/// and many (as the full lists are chosen).
pub struct DraftPlans {
    pub layers: u32,
    pub single: Plan,
    pub few: Option<Plan>,
    pub batched: Plan,
}

struct Ctx<'a> {
    k: Kernels<'a>,
    cfg: &'a ModelConfig,
    w: &'a ModelWeights,
    pool: &'a KvPool,
    acts: &'a Activations,
    step: &'a wgpu::Buffer,
    meta: &'a wgpu::Buffer,
    /// Split-K scratch; `None` where no work item is split.
    partials: Option<&'a wgpu::Buffer>,
    tiles: FlashTiles,
    /// Each layer's RoPE table, an index into `inv_freq`.
    layer_freq: Vec<usize>,
    inv_freq: &'a [wgpu::Buffer],
}

impl Ctx<'_> {
    /// A matrix product over the step's tokens: matrix-vector kernels for plans of one
    /// token per sequence, matrix-matrix kernels for many.
    async fn product(
        &self,
        b: &mut PlanBuilder,
        m: &QMatrix,
        args: &MatArgs<'_>,
        tokens: PlanTokens,
    ) -> Result<(), GpuError> {
        match tokens {
            PlanTokens::Many => self.k.matmul(b, m, args).await,
            PlanTokens::Few => self.k.matvec_batch(b, m, args).await,
            PlanTokens::One => self.k.matvec(b, m, args).await,
        }
    }

    /// The width of the fused Q/K/V activations.
    fn qkv_width(&self) -> u32 {
        self.cfg.q_dim() + 2 * self.cfg.kv_dim()
    }

    fn norm_params(&self) -> NormParams {
        NormParams {
            n: self.cfg.n_embd,
            eps: self.cfg.rms_eps,
            listed: 0,
            _pad: 0,
        }
    }

    /// The residual stream normalised with `weight`, as the input of the products that
    /// follow: where the plan runs matrix-vector kernels (and the tuning asks for it),
    /// each product normalises as it reads (its prologue); otherwise a pass of its own
    /// normalises into `xn`.
    async fn normed_input<'w>(
        &'w self,
        b: &mut PlanBuilder,
        weight: &'w wgpu::Buffer,
        tokens: PlanTokens,
    ) -> Result<(&'w wgpu::Buffer, Prologue<'w>), GpuError> {
        let a = self.acts;
        if tokens != PlanTokens::Many && self.k.tuning.norm_prologue {
            let eps = self.cfg.rms_eps;
            return Ok((&a.x, Prologue::RmsNorm { weight, eps }));
        }
        let norm = self.norm_params();
        self.k
            .rmsnorm(b, &norm, &a.x, weight, &a.xn, self.meta, Out::Act)
            .await?;
        Ok((&a.xn, Prologue::Plain))
    }

    /// The gated activation of the gate/up product's output, as the down product's input
    /// and its stride: made by the product's prologue in matrix-vector plans (where the
    /// tuning asks for it), by a pass of its own into `h` otherwise.
    async fn gated_input(
        &self,
        b: &mut PlanBuilder,
        tokens: PlanTokens,
    ) -> Result<(&wgpu::Buffer, u32, Prologue<'_>), GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gate = cfg.arch.ffn_activation;
        if tokens != PlanTokens::Many && self.k.tuning.gate_prologue {
            return Ok((&a.gate_up, 2 * cfg.n_ff, Prologue::Glu(gate)));
        }
        self.k.glu(b, gate, &a.gate_up, &a.h, cfg.n_ff).await?;
        Ok((&a.h, cfg.n_ff, Prologue::Plain))
    }

    /// Where a block's output goes: straight into the residual stream, or through its
    /// post-norm first (into `branch`, which the post-norm adds to `x`).
    fn block_output(&self) -> (&wgpu::Buffer, Out) {
        match &self.acts.branch {
            Some(branch) => (branch, Out::F32),
            None => (&self.acts.x, Out::AddF32),
        }
    }

    /// Every layer of the model, from the token embedding to the last residual stream.
    async fn layers(&self, tokens: PlanTokens) -> Result<Plan, GpuError> {
        self.first_layers(tokens, self.w.layers.len()).await
    }

    /// The token embedding and the first `n` layers.
    async fn first_layers(&self, tokens: PlanTokens, n: usize) -> Result<Plan, GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gpu = self.k.gpu;
        let mut b = PlanBuilder::new(gpu, self.step.clone());
        let embed_scale = if cfg.arch.scale_embedding {
            (cfg.n_embd as f32).sqrt()
        } else {
            1.0
        };
        self.k
            .embed(&mut b, &self.w.token_embd, &a.tokens, &a.x, embed_scale)
            .await?;
        for i in 0..n {
            self.attention_block(&mut b, i, tokens).await?;
            self.feed_forward_block(&mut b, i, tokens).await?;
        }
        let name = match (tokens, n == self.w.layers.len()) {
            (PlanTokens::Many, true) => "layers (batched)",
            (PlanTokens::Few, true) => "layers (small batch)",
            (PlanTokens::One, true) => "layers (single token)",
            (PlanTokens::Many, false) => "draft layers (batched)",
            (PlanTokens::Few, false) => "draft layers (small batch)",
            (PlanTokens::One, false) => "draft layers (single token)",
        };
        b.finish(gpu, name).await
    }

    /// Layer `i`'s attention half: norm, Q/K/V product, QK-norm, RoPE and the KV write,
    /// attention, output product and post-norm, added into the residual stream.
    async fn attention_block(
        &self,
        b: &mut PlanBuilder,
        i: usize,
        tokens: PlanTokens,
    ) -> Result<(), GpuError> {
        let (cfg, a, l) = (self.cfg, self.acts, &self.w.layers[i]);
        let (d, qkv_w) = (cfg.n_embd, self.qkv_width());
        let norm = self.norm_params();
        let kv = KvBindings {
            k: &self.pool.k[i],
            v: &self.pool.v[i],
            meta: self.meta,
            kv: self.pool.kv,
            block: self.pool.block,
        };
        let (x, prologue) = self.normed_input(b, &l.attn_norm, tokens).await?;
        for (m, offset) in &l.qkv.parts {
            let args = MatArgs {
                x,
                x_stride: d,
                y: &a.qkv,
                y_stride: qkv_w,
                y_offset: *offset,
                out: Out::Act,
                rows: Count::Tokens,
                prologue,
            };
            self.product(b, m, &args, tokens).await?;
        }
        if let Some(weight) = &l.qk_norm {
            let p = HeadNormParams {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                head_dim: cfg.head_dim,
                qkv_stride: qkv_w,
                eps: cfg.rms_eps,
                has_bias: 0,
                _pad: [0; 2],
            };
            // A QKV bias comes before the norm: head_norm adds its query and key
            // parts, rope_kv the rest.
            self.k
                .head_norm(b, &p, &a.qkv, weight, l.qkv_bias.as_ref())
                .await?;
        }
        let rope = self.rope_params(l.qk_norm.is_some());
        let inv_freq = &self.inv_freq[self.layer_freq[i]];
        self.k
            .rope_kv(b, &rope, &a.qkv, &kv, inv_freq, l.qkv_bias.as_ref())
            .await?;
        self.attention(b, i, &kv, tokens).await?;
        let (out, out_kind) = self.block_output();
        let args = MatArgs {
            x: &a.attn,
            x_stride: cfg.q_dim(),
            y: out,
            y_stride: d,
            y_offset: 0,
            out: out_kind,
            rows: Count::Tokens,
            prologue: Prologue::Plain,
        };
        self.product(b, &l.attn_out, &args, tokens).await?;
        if let Some((attn_post, _)) = &l.post_norms {
            self.k
                .rmsnorm(b, &norm, out, attn_post, &a.x, self.meta, Out::AddF32)
                .await?;
        }
        Ok(())
    }

    /// RoPE (and the KV write) for a layer. With QK-norm, head_norm has added the query
    /// and key parts of a QKV bias already, and rope_kv adds only the values' part.
    fn rope_params(&self, has_qk_norm: bool) -> RopeParams {
        let cfg = self.cfg;
        RopeParams {
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            n_rot: cfg.n_rot,
            qkv_stride: self.qkv_width(),
            kv_stride: self.pool.stride,
            neox: u32::from(cfg.arch.rope_style == RopeStyle::HalfSplit),
            bias_start: if has_qk_norm {
                (cfg.n_head + cfg.n_kv_head) * cfg.head_dim
            } else {
                0
            },
        }
    }

    /// Layer `i`'s attention over the cached keys and values into `attn`: flash
    /// attention (with the split-K merge when items are split) on GPUs, the lane kernels
    /// on CPU adapters.
    async fn attention(
        &self,
        b: &mut PlanBuilder,
        i: usize,
        kv: &KvBindings<'_>,
        tokens: PlanTokens,
    ) -> Result<(), GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let attn = AttnParams {
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            qkv_stride: self.qkv_width(),
            kv_stride: self.pool.stride,
            out_stride: cfg.q_dim(),
            window: cfg.layer_windows[i],
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
            head_dim: cfg.head_dim,
        };
        if !self.k.tuning.attn_flash {
            return self
                .k
                .attention(b, &attn, tokens, &a.qkv, kv, &a.attn)
                .await;
        }
        let io = AttnIo {
            qkv: &a.qkv,
            out: &a.attn,
            partials: self.partials,
        };
        self.k
            .flash_attention(b, &attn, self.tiles, &io, kv)
            .await?;
        // Without splits there is nothing to merge.
        if let Some(partials) = self.partials {
            self.k
                .flash_reduce(b, &attn, partials, &a.attn, self.meta)
                .await?;
        }
        Ok(())
    }

    /// Layer `i`'s feed-forward half: norm, then the dense GLU or the mixture of experts,
    /// and the post-norm, added into the residual stream.
    async fn feed_forward_block(
        &self,
        b: &mut PlanBuilder,
        i: usize,
        tokens: PlanTokens,
    ) -> Result<(), GpuError> {
        let (a, l) = (self.acts, &self.w.layers[i]);
        let norm = self.norm_params();
        match &l.ffn {
            FeedForward::Dense { gate_up, down } => {
                let input = self.normed_input(b, &l.ffn_norm, tokens).await?;
                self.dense_feed_forward(b, input, gate_up, down, tokens)
                    .await?
            }
            FeedForward::Experts {
                router,
                gate,
                up,
                down,
            } => {
                // The experts' kernels have no prologue: the norm is a pass of its own.
                self.k
                    .rmsnorm(b, &norm, &a.x, &l.ffn_norm, &a.xn, self.meta, Out::Act)
                    .await?;
                self.experts(b, tokens, (router, gate, up, down)).await?
            }
        }
        if let Some((_, ffn_post)) = &l.post_norms {
            let (out, _) = self.block_output();
            self.k
                .rmsnorm(b, &norm, out, ffn_post, &a.x, self.meta, Out::AddF32)
                .await?;
        }
        Ok(())
    }

    /// The fused gate/up product of the normalised input `(x, prologue)`, the gated
    /// activation, and the down product into the block's output.
    async fn dense_feed_forward(
        &self,
        b: &mut PlanBuilder,
        (x, prologue): (&wgpu::Buffer, Prologue<'_>),
        gate_up: &Fused,
        down: &QMatrix,
        tokens: PlanTokens,
    ) -> Result<(), GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        for (m, offset) in &gate_up.parts {
            let args = MatArgs {
                x,
                x_stride: cfg.n_embd,
                y: &a.gate_up,
                y_stride: 2 * cfg.n_ff,
                y_offset: *offset,
                out: Out::Act,
                rows: Count::Tokens,
                prologue,
            };
            self.product(b, m, &args, tokens).await?;
        }
        let (h, h_stride, gated) = self.gated_input(b, tokens).await?;
        let (out, out_kind) = self.block_output();
        let args = MatArgs {
            x: h,
            x_stride: h_stride,
            y: out,
            y_stride: cfg.n_embd,
            y_offset: 0,
            out: out_kind,
            rows: Count::Tokens,
            prologue: gated,
        };
        self.product(b, down, &args, tokens).await
    }

    /// A mixture of experts on the normalised activations `xn`: router scores, routing,
    /// each expert's products on the slots routed to it, the gate, and the weighted sum
    /// into the residual stream.
    async fn experts(
        &self,
        b: &mut PlanBuilder,
        tokens: PlanTokens,
        (router, gate, up, down): (&QMatrix, &[QMatrix], &[QMatrix], &[QMatrix]),
    ) -> Result<(), GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let (Some(x), Some(m)) = (cfg.experts, &a.moe) else {
            return Err(GpuError::Validation {
                what: "mixture of experts".into(),
                message: "the model has no experts".into(),
            });
        };
        let (d, ff, used) = (cfg.n_embd, cfg.n_ff, x.n_used);
        let args = MatArgs {
            x: &a.xn,
            x_stride: d,
            y: &m.scores,
            y_stride: x.n_expert,
            y_offset: 0,
            out: Out::F32,
            rows: Count::Tokens,
            prologue: Prologue::Plain,
        };
        self.product(b, router, &args, tokens).await?;
        self.k.moe_route(b, &x, &m.scores, &m.routes).await?;
        for e in 0..x.n_expert as usize {
            for (w, offset) in [(&gate[e], 0), (&up[e], ff)] {
                let args = MatArgs {
                    x: &a.xn,
                    x_stride: d,
                    y: &m.gate_up,
                    y_stride: 2 * ff,
                    y_offset: offset,
                    out: Out::Act,
                    rows: Count::Tokens,
                    prologue: Prologue::Plain,
                };
                self.k
                    .moe_matvec(b, w, &args, &m.route_in[e], &m.routes, used)
                    .await?;
            }
        }
        self.k
            .glu_rows(b, cfg.arch.ffn_activation, &m.gate_up, &m.h, ff, used)
            .await?;
        for (e, w) in down.iter().enumerate() {
            let args = MatArgs {
                x: &m.h,
                x_stride: ff,
                y: &m.down,
                y_stride: d,
                y_offset: 0,
                out: Out::F32,
                rows: Count::Tokens,
                prologue: Prologue::Plain,
            };
            self.k
                .moe_matvec(b, w, &args, &m.route_slot[e], &m.routes, used)
                .await?;
        }
        // The configuration refuses experts with post-norms: the sum goes straight into
        // the residual stream.
        self.k
            .moe_combine(b, &m.down, &m.routes, &a.x, d, used)
            .await
    }

    /// Final norm of the wanted rows (into consecutive rows of `xn`) and the LM head, for
    /// one row (`head_one`), a few or several (`head_many`), ending in either output.
    async fn head(
        &self,
        rows: PlanTokens,
        output: HeadOutput,
        pairs: &wgpu::Buffer,
    ) -> Result<Plan, GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gpu = self.k.gpu;
        let mut b = PlanBuilder::new(gpu, self.step.clone());
        let norm = NormParams {
            n: cfg.n_embd,
            eps: cfg.rms_eps,
            listed: 1,
            _pad: 0,
        };
        self.k
            .rmsnorm(
                &mut b,
                &norm,
                &a.x,
                &self.w.output_norm,
                &a.xn,
                self.meta,
                Out::Act,
            )
            .await?;
        let logits = MatArgs {
            x: &a.xn,
            x_stride: cfg.n_embd,
            y: &a.logits,
            y_stride: cfg.vocab_size,
            y_offset: 0,
            out: Out::F32,
            rows: Count::Rows,
            prologue: Prologue::Plain,
        };
        let head = self.w.lm_head();
        match (output, rows) {
            (HeadOutput::Logits, _) => self.product(&mut b, head, &logits, rows).await?,
            // The matrix-matrix kernels have no epilogue, nor has matvec over buffers
            // that start mid-workgroup or where the tuning says the epilogue is slower:
            // they write the logits, which one pass then reads.
            (HeadOutput::Argmax, _)
                if rows == PlanTokens::Many
                    || !self.k.tuning.head_argmax
                    || !self.k.argmax_fits(head) =>
            {
                self.product(&mut b, head, &logits, rows).await?;
                self.k
                    .argmax(&mut b, ArgmaxFrom::Logits, &a.logits, &a.argmax, head.n)
                    .await?;
            }
            (HeadOutput::Argmax, _) => {
                let slots = self.k.argmax_slots(head.n);
                let args = MatArgs {
                    y: pairs,
                    y_stride: slots,
                    out: Out::Argmax,
                    ..logits
                };
                self.product(&mut b, head, &args, rows).await?;
                self.k
                    .argmax(&mut b, ArgmaxFrom::Pairs, pairs, &a.argmax, slots)
                    .await?;
            }
        }
        let name = match (rows, output) {
            (PlanTokens::Many, HeadOutput::Logits) => "head (several rows)",
            (PlanTokens::Few, HeadOutput::Logits) => "head (a few rows)",
            (PlanTokens::One, HeadOutput::Logits) => "head (one row)",
            (PlanTokens::Many, HeadOutput::Argmax) => "argmax head (several rows)",
            (PlanTokens::Few, HeadOutput::Argmax) => "argmax head (a few rows)",
            (PlanTokens::One, HeadOutput::Argmax) => "argmax head (one row)",
        };
        b.finish(gpu, name).await
    }

    /// The head plan for each output.
    async fn heads(&self, rows: PlanTokens, pairs: &wgpu::Buffer) -> Result<Heads, GpuError> {
        Ok(Heads {
            logits: self.head(rows, HeadOutput::Logits, pairs).await?,
            argmax: self.head(rows, HeadOutput::Argmax, pairs).await?,
        })
    }
}

impl ForwardPlans {
    #[allow(clippy::too_many_arguments)]
    pub async fn build(
        gpu: &Gpu,
        variant: Variant,
        tuning: Tuning,
        cfg: &ModelConfig,
        w: &ModelWeights,
        pool: &KvPool,
        acts: &Activations,
        step: &wgpu::Buffer,
        meta: &wgpu::Buffer,
        partials: Option<&wgpu::Buffer>,
        tiles: FlashTiles,
        draft_layers: Option<u32>,
    ) -> Result<ForwardPlans, GpuError> {
        // Layers share a table where their RoPE bases agree.
        let mut tables: Vec<Vec<f32>> = Vec::new();
        let mut layer_freq = Vec::with_capacity(cfg.n_layer as usize);
        for i in 0..cfg.n_layer as usize {
            let table = cfg.rope_inv_freq(i);
            let at = tables.iter().position(|t| *t == table).unwrap_or_else(|| {
                tables.push(table);
                tables.len() - 1
            });
            layer_freq.push(at);
        }
        let mut inv_freq = Vec::with_capacity(tables.len());
        for table in &tables {
            inv_freq.push(
                gpu.storage_with("rope frequencies", bytemuck::cast_slice(table))
                    .await?,
            );
        }
        let ctx = Ctx {
            k: Kernels::with_tuning(gpu, variant, tuning),
            cfg,
            w,
            pool,
            acts,
            step,
            meta,
            partials,
            tiles,
            layer_freq,
            inv_freq: &inv_freq,
        };
        let has_few = ctx.k.tuning.small_batch(2);
        // The matrix-vector heads' argmax pairs: for one row, or a few; one pair where
        // no head takes the epilogue (the buffer is bound nowhere then).
        let epilogue = ctx.k.tuning.head_argmax && ctx.k.argmax_fits(w.lm_head());
        let pair_rows = if has_few { ctx.k.tuning.few_tokens } else { 1 };
        let pairs = match epilogue {
            true => u64::from(pair_rows) * u64::from(ctx.k.argmax_slots(w.lm_head().n)),
            false => 1,
        };
        let head_pairs = gpu.storage("LM head argmax pairs", 8 * pairs).await?;
        let draft = match draft_layers {
            Some(n) => Some(DraftPlans {
                layers: n,
                single: ctx.first_layers(PlanTokens::One, n as usize).await?,
                few: match has_few {
                    true => Some(ctx.first_layers(PlanTokens::Few, n as usize).await?),
                    false => None,
                },
                batched: ctx.first_layers(PlanTokens::Many, n as usize).await?,
            }),
            None => None,
        };
        Ok(ForwardPlans {
            draft,
            layers_single: ctx.layers(PlanTokens::One).await?,
            layers_batched: ctx.layers(PlanTokens::Many).await?,
            few: if has_few {
                Some(FewPlans {
                    tuning: ctx.k.tuning,
                    layers: ctx.layers(PlanTokens::Few).await?,
                    head: ctx.heads(PlanTokens::Few, &head_pairs).await?,
                })
            } else {
                None
            },
            head_one: ctx.heads(PlanTokens::One, &head_pairs).await?,
            head_many: ctx.heads(PlanTokens::Many, &head_pairs).await?,
            _head_pairs: head_pairs,
            _inv_freq: inv_freq,
        })
    }
}
