//! The GPU side of the paged KV cache: one key pool and one value pool per layer,
//! each `n_blocks` blocks of `block` positions.

use crate::gpu::{Gpu, GpuError, KvType};
use crate::model::ModelConfig;

use super::BlockCopy;

pub struct KvPool {
    pub k: Vec<wgpu::Buffer>,
    pub v: Vec<wgpu::Buffer>,
    pub kv: KvType,
    /// Positions per block.
    pub block: u32,
    pub n_blocks: u32,
    /// Elements per position (kv heads × head dimension).
    pub stride: u32,
    /// One block of scratch: WebGPU cannot copy within one buffer, so a block is
    /// copied out to here and back.
    scratch: wgpu::Buffer,
}

impl KvPool {
    pub async fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        kv: KvType,
        block: u32,
        n_blocks: u32,
    ) -> Result<KvPool, GpuError> {
        let stride = cfg.kv_dim();
        let layer_bytes = n_blocks as u64 * block as u64 * kv.bytes_per_position(stride);
        let mut k = Vec::with_capacity(cfg.n_layer as usize);
        let mut v = Vec::with_capacity(cfg.n_layer as usize);
        for i in 0..cfg.n_layer {
            let what = |which| {
                format!("KV pool: {which} of layer {i} ({n_blocks} blocks of {block} positions)")
            };
            k.push(gpu.storage(&what("keys"), layer_bytes).await?);
            v.push(gpu.storage(&what("values"), layer_bytes).await?);
        }
        let block_bytes = block as u64 * kv.bytes_per_position(stride);
        let scratch = gpu
            .storage("KV pool: copy-on-write scratch", block_bytes)
            .await?;
        Ok(KvPool {
            k,
            v,
            kv,
            block,
            n_blocks,
            stride,
            scratch,
        })
    }

    /// Bytes of one block in one layer's key (or value) pool.
    pub fn block_bytes(&self) -> u64 {
        self.block as u64 * self.kv.bytes_per_position(self.stride)
    }

    /// Bytes of every pool together.
    pub fn bytes(&self) -> u64 {
        2 * self.k.len() as u64 * self.n_blocks as u64 * self.block_bytes()
    }

    /// Copies whole blocks in every layer (copy-on-write before a forked sequence
    /// writes into a shared block).
    pub fn encode_copies(&self, enc: &mut wgpu::CommandEncoder, copies: &[BlockCopy]) {
        let bb = self.block_bytes();
        for c in copies {
            for pool in self.k.iter().chain(&self.v) {
                enc.copy_buffer_to_buffer(pool, c.from as u64 * bb, &self.scratch, 0, bb);
                enc.copy_buffer_to_buffer(&self.scratch, 0, pool, c.to as u64 * bb, bb);
            }
        }
    }
}
