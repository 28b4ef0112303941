//! The forward pass of a llama-family model, recorded once as dispatch lists:
//! - `layers_single`: embedding and every transformer block for one token (decode:
//!   matrix-vector kernels);
//! - `layers_batched`: the same for a chunk of tokens (prefill: matrix-matrix kernels);
//! - `head_last`: final norm and LM head for the step's last token;
//! - `head_all`: final norm and LM head for every token of the step.
//!
//! A step encodes a layers list and a head list into one compute pass.

use crate::gpu::{Gpu, GpuError, Plan, PlanBuilder, QMatrix, Variant};
use crate::kernels::{AttnParams, Kernels, MatArgs, NormParams, Out, RopeParams};
use crate::model::{ModelConfig, ModelWeights};

use super::activations::Activations;
use super::kv_cache::KvCache;

pub struct ForwardPlans {
    pub layers_single: Plan,
    pub layers_batched: Plan,
    pub head_last: Plan,
    pub head_all: Plan,
    /// RoPE inverse frequencies (read by the recorded dispatches).
    _inv_freq: wgpu::Buffer,
}

struct Ctx<'a> {
    k: Kernels<'a>,
    cfg: &'a ModelConfig,
    w: &'a ModelWeights,
    kv: &'a KvCache,
    acts: &'a Activations,
    step: &'a wgpu::Buffer,
    inv_freq: &'a wgpu::Buffer,
}

impl Ctx<'_> {
    async fn product(&self, b: &mut PlanBuilder, m: &QMatrix, args: &MatArgs<'_>, batched: bool) -> Result<(), GpuError> {
        if batched { self.k.matmul(b, m, args).await } else { self.k.matvec(b, m, args, false).await }
    }

    async fn layers(&self, batched: bool) -> Result<Plan, GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gpu = self.k.gpu;
        let mut b = PlanBuilder::new(gpu, self.step.clone());
        let d = cfg.n_embd;
        let qkv_w = cfg.q_dim() + 2 * cfg.kv_dim();
        self.k.embed(&mut b, &self.w.token_embd, &a.tokens, &a.x, 1.0).await?;
        for (i, l) in self.w.layers.iter().enumerate() {
            let norm = NormParams { n: d, eps: cfg.rms_eps, last: 0, _pad: 0 };
            self.k.rmsnorm(&mut b, &norm, &a.x, &l.attn_norm, &a.xn).await?;
            for (m, offset) in &l.qkv.parts {
                let args = MatArgs { x: &a.xn, x_stride: d, y: &a.qkv, y_stride: qkv_w, y_offset: *offset, out: Out::Act };
                self.product(&mut b, m, &args, batched).await?;
            }
            let rope = RopeParams {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                head_dim: cfg.head_dim,
                n_rot: cfg.n_rot,
                qkv_stride: qkv_w,
                kv_stride: self.kv.stride,
                _pad: [0; 2],
            };
            self.k.rope_kv(&mut b, &rope, &a.qkv, &self.kv.k[i], &self.kv.v[i], self.inv_freq).await?;
            let attn = AttnParams {
                n_head: cfg.n_head,
                n_kv_head: cfg.n_kv_head,
                qkv_stride: qkv_w,
                kv_stride: self.kv.stride,
                out_stride: cfg.q_dim(),
                window: 0,
                scale: 1.0 / (cfg.head_dim as f32).sqrt(),
                head_dim: cfg.head_dim,
            };
            self.k.attention(&mut b, &attn, batched, &a.qkv, &self.kv.k[i], &self.kv.v[i], &a.attn).await?;
            let args = MatArgs { x: &a.attn, x_stride: cfg.q_dim(), y: &a.x, y_stride: d, y_offset: 0, out: Out::AddF32 };
            self.product(&mut b, &l.attn_out, &args, batched).await?;

            self.k.rmsnorm(&mut b, &norm, &a.x, &l.ffn_norm, &a.xn).await?;
            for (m, offset) in &l.gate_up.parts {
                let args = MatArgs { x: &a.xn, x_stride: d, y: &a.gate_up, y_stride: 2 * cfg.n_ff, y_offset: *offset, out: Out::Act };
                self.product(&mut b, m, &args, batched).await?;
            }
            self.k.silu_mul(&mut b, &a.gate_up, &a.h, cfg.n_ff).await?;
            let args = MatArgs { x: &a.h, x_stride: cfg.n_ff, y: &a.x, y_stride: d, y_offset: 0, out: Out::AddF32 };
            self.product(&mut b, &l.down, &args, batched).await?;
        }
        b.finish(gpu, if batched { "layers (batched)" } else { "layers (single token)" }).await
    }

    async fn head(&self, all: bool) -> Result<Plan, GpuError> {
        let (cfg, a) = (self.cfg, self.acts);
        let gpu = self.k.gpu;
        let mut b = PlanBuilder::new(gpu, self.step.clone());
        let norm = NormParams { n: cfg.n_embd, eps: cfg.rms_eps, last: u32::from(!all), _pad: 0 };
        self.k.rmsnorm(&mut b, &norm, &a.x, &self.w.output_norm, &a.xn).await?;
        let head = self.w.lm_head();
        if all {
            let args = MatArgs { x: &a.xn, x_stride: cfg.n_embd, y: &a.logits_all, y_stride: cfg.vocab_size, y_offset: 0, out: Out::F32 };
            self.k.matmul(&mut b, head, &args).await?;
        } else {
            // The norm wrote the last token to row 0: the head reads row 0 only.
            let args = MatArgs { x: &a.xn, x_stride: cfg.n_embd, y: &a.logits, y_stride: cfg.vocab_size, y_offset: 0, out: Out::F32 };
            self.k.matvec(&mut b, head, &args, true).await?;
        }
        b.finish(gpu, if all { "head (all positions)" } else { "head (last position)" }).await
    }
}

impl ForwardPlans {
    pub async fn build(
        gpu: &Gpu,
        variant: Variant,
        cfg: &ModelConfig,
        w: &ModelWeights,
        kv: &KvCache,
        acts: &Activations,
        step: &wgpu::Buffer,
    ) -> Result<ForwardPlans, GpuError> {
        let inv_freq = gpu.storage_with("rope frequencies", bytemuck::cast_slice(&cfg.rope_inv_freq())).await?;
        let ctx = Ctx { k: Kernels::new(gpu, variant), cfg, w, kv, acts, step, inv_freq: &inv_freq };
        Ok(ForwardPlans {
            layers_single: ctx.layers(false).await?,
            layers_batched: ctx.layers(true).await?,
            head_last: ctx.head(false).await?,
            head_all: ctx.head(true).await?,
            _inv_freq: inv_freq,
        })
    }
}
