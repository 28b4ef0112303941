//! The forward pass, recorded once as dispatch lists. One transformer block serves every
//! architecture; its options (`model::ArchOptions`) add a QKV bias, QK-norm, post-norms,
//! the gate's nonlinearity, embedding scaling and per-layer windows and RoPE bases.
//! The lists:
//! - `layers_single`: embedding and every transformer block for a step of one token
//!   (decode: matrix-vector kernels);
//! - `layers_batched`: the same for a step of many tokens, from one or several
//!   sequences (prefill chunks and batched decoding: matrix-matrix kernels);
//! - `head_one` / `head_many`: final norm and LM head for the step's wanted rows (one
//!   row: matrix-vector; several: matrix-matrix).
//!
//! A step encodes a layers list and, when it wants logits, a head list into one compute
//! pass. Positions and KV-cache slots come from the step metadata, so the same lists
//! serve any mix of sequences.

use crate::gpu::{Count, Gpu, GpuError, Plan, PlanBuilder, QMatrix, Variant};
use crate::kernels::{
    AttnIo, AttnParams, FlashTiles, HeadNormParams, Kernels, KvBindings, MatArgs, NormParams, Out,
    PlanTokens, RopeParams, Tuning,
};
use crate::kv::KvPool;
use crate::model::{FeedForward, ModelConfig, ModelWeights, RopeStyle};

use super::activations::Activations;

pub struct ForwardPlans {
    pub layers_single: Plan,
    pub layers_batched: Plan,
    pub head_one: Plan,
    pub head_many: Plan,
    /// RoPE inverse frequencies, one buffer per distinct table (read by the recorded
    /// dispatches).
    _inv_freq: Vec<wgpu::Buffer>,
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
    async fn product(
        &self,
        b: &mut PlanBuilder,
        m: &QMatrix,
        args: &MatArgs<'_>,
        batched: bool,
    ) -> Result<(), GpuError> {
        if batched {
            self.k.matmul(b, m, args).await
        } else {
            self.k.matvec(b, m, args).await
        }
    }

    async fn layers(&self, batched: bool) -> Result<Plan, GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gpu = self.k.gpu;
        let mut b = PlanBuilder::new(gpu, self.step.clone());
        let d = cfg.n_embd;
        let qkv_w = cfg.q_dim() + 2 * cfg.kv_dim();
        let tokens = Count::Tokens;
        let o = &cfg.arch;
        let embed_scale = if o.scale_embedding {
            (d as f32).sqrt()
        } else {
            1.0
        };
        self.k
            .embed(&mut b, &self.w.token_embd, &a.tokens, &a.x, embed_scale)
            .await?;
        let norm = NormParams {
            n: d,
            eps: cfg.rms_eps,
            listed: 0,
            _pad: 0,
        };
        // A block's output goes straight into the residual stream, or through its
        // post-norm first.
        let out_to = match &a.branch {
            Some(branch) => (branch, Out::F32),
            None => (&a.x, Out::AddF32),
        };
        for (i, l) in self.w.layers.iter().enumerate() {
            let kv = KvBindings {
                k: &self.pool.k[i],
                v: &self.pool.v[i],
                meta: self.meta,
                kv: self.pool.kv,
                block: self.pool.block,
            };
            self.k
                .rmsnorm(
                    &mut b,
                    &norm,
                    &a.x,
                    &l.attn_norm,
                    &a.xn,
                    self.meta,
                    Out::Act,
                )
                .await?;
            for (m, offset) in &l.qkv.parts {
                let args = MatArgs {
                    x: &a.xn,
                    x_stride: d,
                    y: &a.qkv,
                    y_stride: qkv_w,
                    y_offset: *offset,
                    out: Out::Act,
                    rows: tokens,
                };
                self.product(&mut b, m, &args, batched).await?;
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
                    .head_norm(&mut b, &p, &a.qkv, weight, l.qkv_bias.as_ref())
                    .await?;
            }
            let rope = RopeParams {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                head_dim: cfg.head_dim,
                n_rot: cfg.n_rot,
                qkv_stride: qkv_w,
                kv_stride: self.pool.stride,
                neox: u32::from(o.rope_style == RopeStyle::HalfSplit),
                bias_start: if l.qk_norm.is_some() {
                    (cfg.n_head + cfg.n_kv_head) * cfg.head_dim
                } else {
                    0
                },
            };
            let inv_freq = &self.inv_freq[self.layer_freq[i]];
            self.k
                .rope_kv(&mut b, &rope, &a.qkv, &kv, inv_freq, l.qkv_bias.as_ref())
                .await?;
            let attn = AttnParams {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                qkv_stride: qkv_w,
                kv_stride: self.pool.stride,
                out_stride: cfg.q_dim(),
                window: cfg.layer_windows[i],
                scale: 1.0 / (cfg.head_dim as f32).sqrt(),
                head_dim: cfg.head_dim,
            };
            if self.k.tuning.attn_flash {
                let io = AttnIo {
                    qkv: &a.qkv,
                    out: &a.attn,
                    partials: self.partials,
                };
                self.k
                    .flash_attention(&mut b, &attn, self.tiles, &io, &kv)
                    .await?;
                // Without splits there is nothing to merge.
                if let Some(partials) = self.partials {
                    self.k
                        .flash_reduce(&mut b, &attn, partials, &a.attn, self.meta)
                        .await?;
                }
            } else {
                let tokens = if batched {
                    PlanTokens::Many
                } else {
                    PlanTokens::One
                };
                self.k
                    .attention(&mut b, &attn, tokens, &a.qkv, &kv, &a.attn)
                    .await?;
            }
            let args = MatArgs {
                x: &a.attn,
                x_stride: cfg.q_dim(),
                y: out_to.0,
                y_stride: d,
                y_offset: 0,
                out: out_to.1,
                rows: tokens,
            };
            self.product(&mut b, &l.attn_out, &args, batched).await?;
            if let Some((attn_post, _)) = &l.post_norms {
                self.k
                    .rmsnorm(
                        &mut b,
                        &norm,
                        out_to.0,
                        attn_post,
                        &a.x,
                        self.meta,
                        Out::AddF32,
                    )
                    .await?;
            }

            self.k
                .rmsnorm(&mut b, &norm, &a.x, &l.ffn_norm, &a.xn, self.meta, Out::Act)
                .await?;
            match &l.ffn {
                FeedForward::Dense { gate_up, down } => {
                    for (m, offset) in &gate_up.parts {
                        let args = MatArgs {
                            x: &a.xn,
                            x_stride: d,
                            y: &a.gate_up,
                            y_stride: 2 * cfg.n_ff,
                            y_offset: *offset,
                            out: Out::Act,
                            rows: tokens,
                        };
                        self.product(&mut b, m, &args, batched).await?;
                    }
                    self.k
                        .glu(&mut b, o.ffn_activation, &a.gate_up, &a.h, cfg.n_ff)
                        .await?;
                    let args = MatArgs {
                        x: &a.h,
                        x_stride: cfg.n_ff,
                        y: out_to.0,
                        y_stride: d,
                        y_offset: 0,
                        out: out_to.1,
                        rows: tokens,
                    };
                    self.product(&mut b, down, &args, batched).await?;
                }
                FeedForward::Experts {
                    router,
                    gate,
                    up,
                    down,
                } => {
                    self.experts(&mut b, batched, (router, gate, up, down))
                        .await?
                }
            }
            if let Some((_, ffn_post)) = &l.post_norms {
                self.k
                    .rmsnorm(
                        &mut b,
                        &norm,
                        out_to.0,
                        ffn_post,
                        &a.x,
                        self.meta,
                        Out::AddF32,
                    )
                    .await?;
            }
        }
        b.finish(
            gpu,
            if batched {
                "layers (batched)"
            } else {
                "layers (single token)"
            },
        )
        .await
    }

    /// A mixture of experts on the normalised activations `xn`: router scores, routing,
    /// each expert's products on the slots routed to it, the gate, and the weighted sum
    /// into the residual stream.
    async fn experts(
        &self,
        b: &mut PlanBuilder,
        batched: bool,
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
        };
        self.product(b, router, &args, batched).await?;
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

    /// Final norm of the wanted rows (into consecutive rows of `xn`) and the LM head.
    async fn head(&self, many: bool) -> Result<Plan, GpuError> {
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
        let args = MatArgs {
            x: &a.xn,
            x_stride: cfg.n_embd,
            y: &a.logits,
            y_stride: cfg.vocab_size,
            y_offset: 0,
            out: Out::F32,
            rows: Count::Rows,
        };
        self.product(&mut b, self.w.lm_head(), &args, many).await?;
        b.finish(
            gpu,
            if many {
                "head (several rows)"
            } else {
                "head (one row)"
            },
        )
        .await
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
        Ok(ForwardPlans {
            layers_single: ctx.layers(false).await?,
            layers_batched: ctx.layers(true).await?,
            head_one: ctx.head(false).await?,
            head_many: ctx.head(true).await?,
            _inv_freq: inv_freq,
        })
    }
}
