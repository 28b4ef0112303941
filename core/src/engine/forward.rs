//! The forward pass of a llama-family model, recorded once as dispatch lists:
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
use crate::kernels::{AttnIo, AttnParams, FlashTiles, Kernels, KvBindings, MatArgs, NormParams, Out, RopeParams, Tuning};
use crate::kv::KvPool;
use crate::model::{ModelConfig, ModelWeights};

use super::activations::Activations;

pub struct ForwardPlans {
    pub layers_single: Plan,
    pub layers_batched: Plan,
    pub head_one: Plan,
    pub head_many: Plan,
    /// RoPE inverse frequencies (read by the recorded dispatches).
    _inv_freq: wgpu::Buffer,
}

struct Ctx<'a> {
    k: Kernels<'a>,
    cfg: &'a ModelConfig,
    w: &'a ModelWeights,
    pool: &'a KvPool,
    acts: &'a Activations,
    step: &'a wgpu::Buffer,
    meta: &'a wgpu::Buffer,
    partials: &'a wgpu::Buffer,
    tiles: FlashTiles,
    inv_freq: &'a wgpu::Buffer,
    window: u32,
}

impl Ctx<'_> {
    async fn product(&self, b: &mut PlanBuilder, m: &QMatrix, args: &MatArgs<'_>, batched: bool) -> Result<(), GpuError> {
        if batched { self.k.matmul(b, m, args).await } else { self.k.matvec(b, m, args).await }
    }

    async fn layers(&self, batched: bool) -> Result<Plan, GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gpu = self.k.gpu;
        let mut b = PlanBuilder::new(gpu, self.step.clone());
        let d = cfg.n_embd;
        let qkv_w = cfg.q_dim() + 2 * cfg.kv_dim();
        let tokens = Count::Tokens;
        self.k.embed(&mut b, &self.w.token_embd, &a.tokens, &a.x, 1.0).await?;
        let norm = NormParams { n: d, eps: cfg.rms_eps, listed: 0, _pad: 0 };
        for (i, l) in self.w.layers.iter().enumerate() {
            let kv = KvBindings { k: &self.pool.k[i], v: &self.pool.v[i], meta: self.meta, kv: self.pool.kv, block: self.pool.block };
            self.k.rmsnorm(&mut b, &norm, &a.x, &l.attn_norm, &a.xn, self.meta).await?;
            for (m, offset) in &l.qkv.parts {
                let args = MatArgs { x: &a.xn, x_stride: d, y: &a.qkv, y_stride: qkv_w, y_offset: *offset, out: Out::Act, rows: tokens };
                self.product(&mut b, m, &args, batched).await?;
            }
            let rope = RopeParams {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                head_dim: cfg.head_dim,
                n_rot: cfg.n_rot,
                qkv_stride: qkv_w,
                kv_stride: self.pool.stride,
                _pad: [0; 2],
            };
            self.k.rope_kv(&mut b, &rope, &a.qkv, &kv, self.inv_freq).await?;
            let attn = AttnParams {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                qkv_stride: qkv_w,
                kv_stride: self.pool.stride,
                out_stride: cfg.q_dim(),
                window: self.window,
                scale: 1.0 / (cfg.head_dim as f32).sqrt(),
                head_dim: cfg.head_dim,
            };
            if self.k.tuning.attn_flash {
                let io = AttnIo { qkv: &a.qkv, out: &a.attn, partials: self.partials };
                self.k.flash_attention(&mut b, &attn, self.tiles, &io, &kv).await?;
                self.k.flash_reduce(&mut b, &attn, self.partials, &a.attn, self.meta).await?;
            } else {
                self.k.attention(&mut b, &attn, batched, &a.qkv, &kv, &a.attn).await?;
            }
            let args = MatArgs { x: &a.attn, x_stride: cfg.q_dim(), y: &a.x, y_stride: d, y_offset: 0, out: Out::AddF32, rows: tokens };
            self.product(&mut b, &l.attn_out, &args, batched).await?;

            self.k.rmsnorm(&mut b, &norm, &a.x, &l.ffn_norm, &a.xn, self.meta).await?;
            for (m, offset) in &l.gate_up.parts {
                let args = MatArgs { x: &a.xn, x_stride: d, y: &a.gate_up, y_stride: 2 * cfg.n_ff, y_offset: *offset, out: Out::Act, rows: tokens };
                self.product(&mut b, m, &args, batched).await?;
            }
            self.k.silu_mul(&mut b, &a.gate_up, &a.h, cfg.n_ff).await?;
            let args = MatArgs { x: &a.h, x_stride: cfg.n_ff, y: &a.x, y_stride: d, y_offset: 0, out: Out::AddF32, rows: tokens };
            self.product(&mut b, &l.down, &args, batched).await?;
        }
        b.finish(gpu, if batched { "layers (batched)" } else { "layers (single token)" }).await
    }

    /// Final norm of the wanted rows (into consecutive rows of `xn`) and the LM head.
    async fn head(&self, many: bool) -> Result<Plan, GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gpu = self.k.gpu;
        let mut b = PlanBuilder::new(gpu, self.step.clone());
        let norm = NormParams { n: cfg.n_embd, eps: cfg.rms_eps, listed: 1, _pad: 0 };
        self.k.rmsnorm(&mut b, &norm, &a.x, &self.w.output_norm, &a.xn, self.meta).await?;
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
        b.finish(gpu, if many { "head (several rows)" } else { "head (one row)" }).await
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
        partials: &wgpu::Buffer,
        tiles: FlashTiles,
    ) -> Result<ForwardPlans, GpuError> {
        let inv_freq = gpu.storage_with("rope frequencies", bytemuck::cast_slice(&cfg.rope_inv_freq())).await?;
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
            inv_freq: &inv_freq,
            window: cfg.sliding_window.unwrap_or(0),
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
