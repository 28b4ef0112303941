//! The KV cache of one sequence: per layer, keys and values for every position, in the
//! activation type, laid out [position][kv head][dimension].

use crate::gpu::{Act, Gpu, GpuError};
use crate::model::ModelConfig;

pub struct KvCache {
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    /// Elements per position (kv heads × head dimension).
    pub stride: u32,
    pub n_ctx: u32,
    bytes: u64,
}

impl KvCache {
    pub async fn new(gpu: &Gpu, cfg: &ModelConfig, act: Act, n_ctx: u32) -> Result<KvCache, GpuError> {
        let stride = cfg.kv_dim();
        let layer_bytes = n_ctx as u64 * stride as u64 * act.size();
        let mut k = Vec::with_capacity(cfg.n_layer as usize);
        let mut v = Vec::with_capacity(cfg.n_layer as usize);
        for i in 0..cfg.n_layer {
            k.push(gpu.storage(&format!("kv cache: keys of layer {i} ({n_ctx} positions)"), layer_bytes).await?);
            v.push(gpu.storage(&format!("kv cache: values of layer {i} ({n_ctx} positions)"), layer_bytes).await?);
        }
        Ok(KvCache { k, v, stride, n_ctx, bytes: 2 * layer_bytes * cfg.n_layer as u64 })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
