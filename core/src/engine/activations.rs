//! Activation buffers, sized once for the largest step.

use crate::gpu::{Act, Gpu, GpuError};
use crate::model::ModelConfig;

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
}

impl Activations {
    pub async fn new(gpu: &Gpu, cfg: &ModelConfig, act: Act, max_batch: u32, max_rows: u32) -> Result<Activations, GpuError> {
        let b = max_batch as u64;
        let a = act.size();
        let qkv_w = (cfg.q_dim() + 2 * cfg.kv_dim()) as u64;
        Ok(Activations {
            tokens: gpu.storage("step tokens", 4 * b).await?,
            x: gpu.storage("residual stream", 4 * b * cfg.n_embd as u64).await?,
            xn: gpu.storage("normalised activations", a * b * cfg.n_embd as u64).await?,
            qkv: gpu.storage("queries, keys and values", a * b * qkv_w).await?,
            attn: gpu.storage("attention output", a * b * cfg.q_dim() as u64).await?,
            gate_up: gpu.storage("gate and up projections", a * b * 2 * cfg.n_ff as u64).await?,
            h: gpu.storage("feed-forward hidden", a * b * cfg.n_ff as u64).await?,
            logits: gpu.storage("logits", 4 * max_rows as u64 * cfg.vocab_size as u64).await?,
        })
    }
}
