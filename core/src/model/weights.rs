//! The tensors of a llama-family model, checked against the configuration and uploaded
//! to the GPU as their GGUF blocks.

use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::gpu::{Gpu, QMatrix, gpu_weight_type};
use crate::quant::{GgmlType, dequantize};
use crate::Error;

use super::{ModelConfig, ModelError};

/// A projection whose output is several matrices side by side (fused Q/K/V or gate/up).
/// When the parts share a format they are one matrix (one dispatch); otherwise each part
/// is its own matrix writing at its column offset.
#[derive(Debug)]
pub struct Fused {
    pub parts: Vec<(QMatrix, u32)>,
}

/// One transformer block.
#[derive(Debug)]
pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub qkv: Fused,
    pub attn_out: QMatrix,
    pub ffn_norm: wgpu::Buffer,
    pub gate_up: Fused,
    pub down: QMatrix,
}

/// Every weight of the model, on the GPU.
#[derive(Debug)]
pub struct ModelWeights {
    pub token_embd: QMatrix,
    /// `None` when the LM head is tied to the embedding.
    pub output: Option<QMatrix>,
    pub output_norm: wgpu::Buffer,
    pub layers: Vec<LayerWeights>,
    /// Bytes of weights uploaded.
    pub bytes: u64,
}

impl ModelWeights {
    /// The LM head matrix.
    pub fn lm_head(&self) -> &QMatrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

/// Finds a tensor and checks its shape and that the GPU kernels read its format.
fn tensor<'a>(file: &'a GgufFile, name: &str, dims: &[u64], matrix: bool) -> Result<&'a TensorInfo, ModelError> {
    let t = file.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    if t.dims != dims {
        return Err(ModelError::ShapeMismatch { tensor: name.to_string(), expected: dims.to_vec(), found: t.dims.clone() });
    }
    let supported = if matrix {
        gpu_weight_type(t.ty).is_some()
    } else {
        matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    };
    if !supported {
        return Err(GgufError::UnsupportedTensorType { ty: t.ty.name().to_string(), tensor: name.to_string() }.into());
    }
    Ok(t)
}

/// Checks that every tensor the configuration needs is present, shaped and typed as
/// expected, before anything is uploaded.
pub fn check_tensors(file: &GgufFile, cfg: &ModelConfig) -> Result<(), ModelError> {
    for_each_tensor(cfg, |name, dims, matrix| tensor(file, name, dims, matrix).map(|_| ()))
}

fn for_each_tensor(
    cfg: &ModelConfig,
    mut f: impl FnMut(&str, &[u64], bool) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let (d, ff, q, kv, v) = (cfg.n_embd as u64, cfg.n_ff as u64, cfg.q_dim() as u64, cfg.kv_dim() as u64, cfg.vocab_size as u64);
    f("token_embd.weight", &[d, v], true)?;
    f("output_norm.weight", &[d], false)?;
    if !cfg.tied_embeddings {
        f("output.weight", &[d, v], true)?;
    }
    for i in 0..cfg.n_layer {
        let b = |n: &str| format!("blk.{i}.{n}.weight");
        f(&b("attn_norm"), &[d], false)?;
        f(&b("attn_q"), &[d, q], true)?;
        f(&b("attn_k"), &[d, kv], true)?;
        f(&b("attn_v"), &[d, kv], true)?;
        f(&b("attn_output"), &[q, d], true)?;
        f(&b("ffn_norm"), &[d], false)?;
        f(&b("ffn_gate"), &[d, ff], true)?;
        f(&b("ffn_up"), &[d, ff], true)?;
        f(&b("ffn_down"), &[ff, d], true)?;
    }
    Ok(())
}

/// Where the loader gets each tensor's bytes (a memory map natively; fetched pieces in
/// the browser).
pub trait TensorSource {
    fn bytes(&self, info: &TensorInfo) -> Result<&[u8], Error>;
}

/// A whole GGUF file in memory (or memory-mapped).
pub struct FileBytes<'a> {
    pub file: &'a GgufFile,
    pub bytes: &'a [u8],
}

impl TensorSource for FileBytes<'_> {
    fn bytes(&self, info: &TensorInfo) -> Result<&[u8], Error> {
        Ok(self.file.tensor_data(self.bytes, info)?)
    }
}

async fn vector(gpu: &Gpu, file: &GgufFile, src: &dyn TensorSource, name: &str) -> Result<wgpu::Buffer, Error> {
    let t = file.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    let values = dequantize(t.ty, src.bytes(t)?, t.n_elements() as usize).map_err(|e| {
        ModelError::InvalidConfig(format!("tensor {name}: {e}"))
    })?;
    Ok(gpu.storage_with(name, bytemuck::cast_slice(&values)).await?)
}

async fn matrix(gpu: &Gpu, file: &GgufFile, src: &dyn TensorSource, name: &str) -> Result<QMatrix, Error> {
    let t = file.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    Ok(QMatrix::upload(gpu, name, t.ty, t.row_elems() as u32, &[src.bytes(t)?]).await?)
}

async fn fused(gpu: &Gpu, file: &GgufFile, src: &dyn TensorSource, name: &str, parts: &[String]) -> Result<Fused, Error> {
    let infos: Vec<&TensorInfo> = parts
        .iter()
        .map(|p| file.tensor(p).ok_or_else(|| ModelError::MissingTensor(p.clone())))
        .collect::<Result<_, _>>()?;
    let k = infos[0].row_elems() as u32;
    if infos.iter().all(|t| t.ty == infos[0].ty) {
        let bytes: Vec<&[u8]> = infos.iter().map(|t| src.bytes(t)).collect::<Result<_, _>>()?;
        let m = QMatrix::upload(gpu, name, infos[0].ty, k, &bytes).await?;
        return Ok(Fused { parts: vec![(m, 0)] });
    }
    let mut out = Vec::new();
    let mut offset = 0;
    for (p, t) in parts.iter().zip(&infos) {
        let m = QMatrix::upload(gpu, p, t.ty, k, &[src.bytes(t)?]).await?;
        let rows = m.n;
        out.push((m, offset));
        offset += rows;
    }
    Ok(Fused { parts: out })
}

impl ModelWeights {
    /// Checks every tensor, then uploads them.
    pub async fn upload(gpu: &Gpu, file: &GgufFile, cfg: &ModelConfig, src: &dyn TensorSource) -> Result<ModelWeights, Error> {
        check_tensors(file, cfg)?;
        let token_embd = matrix(gpu, file, src, "token_embd.weight").await?;
        let output = if cfg.tied_embeddings { None } else { Some(matrix(gpu, file, src, "output.weight").await?) };
        let output_norm = vector(gpu, file, src, "output_norm.weight").await?;
        let mut layers = Vec::with_capacity(cfg.n_layer as usize);
        for i in 0..cfg.n_layer {
            let b = |n: &str| format!("blk.{i}.{n}.weight");
            layers.push(LayerWeights {
                attn_norm: vector(gpu, file, src, &b("attn_norm")).await?,
                qkv: fused(gpu, file, src, &format!("blk.{i}.attn_qkv"), &[b("attn_q"), b("attn_k"), b("attn_v")]).await?,
                attn_out: matrix(gpu, file, src, &b("attn_output")).await?,
                ffn_norm: vector(gpu, file, src, &b("ffn_norm")).await?,
                gate_up: fused(gpu, file, src, &format!("blk.{i}.ffn_gate_up"), &[b("ffn_gate"), b("ffn_up")]).await?,
                down: matrix(gpu, file, src, &b("ffn_down")).await?,
            });
        }
        let mut bytes = token_embd.bytes() + output.as_ref().map_or(0, |m| m.bytes());
        for l in &layers {
            bytes += l.qkv.parts.iter().map(|(m, _)| m.bytes()).sum::<u64>()
                + l.attn_out.bytes()
                + l.gate_up.parts.iter().map(|(m, _)| m.bytes()).sum::<u64>()
                + l.down.bytes();
        }
        Ok(ModelWeights { token_embd, output, output_norm, layers, bytes })
    }
}
