//! Activation buffers, sized once for the largest step.

use crate::gpu::{Act, Gpu, GpuError};
use crate::kernels::{MoeRoute, product_input};
use crate::model::{Experts, ModelConfig};

pub struct Activations {
    /// Token ids of the step.
    pub tokens: wgpu::Buffer,
    /// The residual stream, f32 [tokens, n_embd].
    pub x: wgpu::Buffer,
    /// Normalised activations [tokens, n_embd].
    pub xn: wgpu::Buffer,
    /// Queries, keys and values side by side [tokens, q + 2 kv].
    pub qkv: wgpu::Buffer,
    /// Attention output [tokens, q].
    pub attn: wgpu::Buffer,
    /// Gate and up projections side by side [tokens, 2 ff].
    pub gate_up: wgpu::Buffer,
    /// SwiGLU output [tokens, ff].
    pub h: wgpu::Buffer,
    /// Logits of the step's wanted rows, f32 [rows, vocab].
    pub logits: wgpu::Buffer,
    /// Each wanted row's largest logit as (index, bits) [rows, 2]: written by the argmax
    /// heads and by the sampling tail's greedy pass.
    pub argmax: wgpu::Buffer,
    /// A block's output before its post-norm, f32 [tokens, n_embd] (post-norm
    /// architectures only).
    pub branch: Option<wgpu::Buffer>,
    /// Mixture-of-experts scratch (MoE models only).
    pub moe: Option<MoeActivations>,
}

/// Buffers of a mixture-of-experts feed-forward step; "slot" is one chosen expert of
/// one token.
pub struct MoeActivations {
    /// Router scores, f32 [tokens, n_expert].
    pub scores: wgpu::Buffer,
    /// (expert, weight bits) per slot [tokens, n_used, 2].
    pub routes: wgpu::Buffer,
    /// Gate and up projections per slot [slots, 2 ff].
    pub gate_up: wgpu::Buffer,
    /// Gated hidden activations per slot [slots, ff].
    pub h: wgpu::Buffer,
    /// Down projections per slot, f32 [slots, n_embd].
    pub down: wgpu::Buffer,
    /// Each expert's index, as `moe_matvec.wgsl`'s `Route` for the per-token input
    /// (gate, up) and the per-slot input (down).
    pub route_in: Vec<wgpu::Buffer>,
    pub route_slot: Vec<wgpu::Buffer>,
}

impl Activations {
    pub async fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        act: Act,
        max_batch: u32,
        max_rows: u32,
        uniform_x: bool,
    ) -> Result<Activations, GpuError> {
        let b = max_batch as u64;
        let a = act.size();
        let qkv_w = (cfg.q_dim() + 2 * cfg.kv_dim()) as u64;
        let input = |what: &'static str, bytes: u64| product_input(gpu, what, bytes, uniform_x);
        Ok(Activations {
            tokens: gpu.storage("step tokens", 4 * b).await?,
            // Matvec's norm prologue reads the residual stream as its x.
            x: input("residual stream", 4 * b * cfg.n_embd as u64).await?,
            xn: input("normalised activations", a * b * cfg.n_embd as u64).await?,
            qkv: gpu
                .storage("queries, keys and values", a * b * qkv_w)
                .await?,
            attn: input("attention output", a * b * cfg.q_dim() as u64).await?,
            // Matvec's gate prologue reads the gate/up output as its x.
            gate_up: input("gate and up projections", a * b * 2 * cfg.n_ff as u64).await?,
            h: input("feed-forward hidden", a * b * cfg.n_ff as u64).await?,
            logits: gpu
                .storage("logits", 4 * max_rows as u64 * cfg.vocab_size as u64)
                .await?,
            argmax: gpu.storage("argmax per row", 8 * max_rows as u64).await?,
            moe: match cfg.experts {
                Some(x) => Some(MoeActivations::new(gpu, cfg, &x, a, b).await?),
                None => None,
            },
            branch: match cfg.arch.post_norms {
                true => Some(
                    gpu.storage(
                        "block output before its post-norm",
                        4 * b * cfg.n_embd as u64,
                    )
                    .await?,
                ),
                false => None,
            },
        })
    }
}

impl MoeActivations {
    async fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        x: &Experts,
        act_size: u64,
        max_batch: u64,
    ) -> Result<MoeActivations, GpuError> {
        let slots = max_batch * x.n_used as u64;
        let ff = cfg.n_ff as u64;
        let mut route_in = Vec::new();
        let mut route_slot = Vec::new();
        for expert in 0..x.n_expert {
            for (list, x_per_slot) in [(&mut route_in, 0), (&mut route_slot, 1)] {
                let r = MoeRoute {
                    expert,
                    n_used: x.n_used,
                    x_per_slot,
                    _pad: 0,
                };
                list.push(
                    gpu.storage_with("expert route", bytemuck::bytes_of(&r))
                        .await?,
                );
            }
        }
        Ok(MoeActivations {
            scores: gpu
                .storage("router scores", 4 * max_batch * x.n_expert as u64)
                .await?,
            routes: gpu.storage("expert routes", 8 * slots).await?,
            gate_up: gpu
                .storage(
                    "experts' gate and up projections",
                    act_size * slots * 2 * ff,
                )
                .await?,
            h: gpu
                .storage("experts' hidden activations", act_size * slots * ff)
                .await?,
            down: gpu
                .storage("experts' outputs", 4 * slots * cfg.n_embd as u64)
                .await?,
            route_in,
            route_slot,
        })
    }
}
