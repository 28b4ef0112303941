//! The tensors of a model, checked against the configuration and uploaded to the GPU:
//! matrices as their GGUF blocks, vectors (norms, biases) as f32.

use std::borrow::Cow;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use crate::Error;
use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::gpu::{Gpu, MatrixWriter, QMatrix, gpu_weight_type};
use crate::kernels::product_input;
use crate::quant::{GgmlType, dequantize};

use super::{ModelConfig, ModelError};

/// A projection whose output is several matrices side by side (fused Q/K/V or gate/up).
/// When the parts share a format they are one matrix (one dispatch); otherwise each part
/// is its own matrix writing at its column offset.
#[derive(Debug)]
pub struct Fused {
    pub parts: Vec<(QMatrix, u32)>,
}

/// The feed-forward network of a block.
#[derive(Debug)]
pub enum FeedForward {
    Dense {
        gate_up: Fused,
        down: QMatrix,
    },
    /// A router (`ffn_gate_inp`) and each expert's gate, up and down matrices (slices
    /// of the `ffn_*_exps` tensors, one matrix per expert so each binds as an ordinary
    /// buffer).
    Experts {
        router: QMatrix,
        gate: Vec<QMatrix>,
        up: Vec<QMatrix>,
        down: Vec<QMatrix>,
    },
}

impl FeedForward {
    fn bytes(&self) -> u64 {
        match self {
            FeedForward::Dense { gate_up, down } => {
                gate_up.parts.iter().map(|(m, _)| m.bytes()).sum::<u64>() + down.bytes()
            }
            FeedForward::Experts {
                router,
                gate,
                up,
                down,
            } => {
                router.bytes()
                    + gate
                        .iter()
                        .chain(up)
                        .chain(down)
                        .map(QMatrix::bytes)
                        .sum::<u64>()
            }
        }
    }
}

/// One transformer block.
#[derive(Debug)]
pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub qkv: Fused,
    pub attn_out: QMatrix,
    pub ffn_norm: wgpu::Buffer,
    pub ffn: FeedForward,
    /// q | k | v biases, when the architecture has them.
    pub qkv_bias: Option<wgpu::Buffer>,
    /// Per-head query norm | key norm weights (`head_dim` each), for QK-norm.
    pub qk_norm: Option<wgpu::Buffer>,
    /// Norms of the attention and feed-forward outputs, for post-norm blocks.
    pub post_norms: Option<(wgpu::Buffer, wgpu::Buffer)>,
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
fn tensor<'a>(
    file: &'a GgufFile,
    name: &str,
    dims: &[u64],
    matrix: bool,
) -> Result<&'a TensorInfo, ModelError> {
    let t = file
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    if t.dims != dims {
        return Err(ModelError::ShapeMismatch {
            tensor: name.to_string(),
            expected: dims.to_vec(),
            found: t.dims.clone(),
        });
    }
    let supported = if matrix {
        gpu_weight_type(t.ty).is_some()
    } else {
        matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    };
    if !supported {
        return Err(GgufError::UnsupportedTensorType {
            ty: t.ty.name().to_string(),
            tensor: name.to_string(),
        }
        .into());
    }
    Ok(t)
}

/// Checks that every tensor the configuration needs is present, shaped and typed as
/// expected, before anything is uploaded.
pub fn check_tensors(file: &GgufFile, cfg: &ModelConfig) -> Result<(), ModelError> {
    for_each_tensor(cfg, |name, dims, matrix| {
        tensor(file, name, dims, matrix).map(|_| ())
    })
}

fn for_each_tensor(
    cfg: &ModelConfig,
    mut f: impl FnMut(&str, &[u64], bool) -> Result<(), ModelError>,
) -> Result<(), ModelError> {
    let (d, ff, q, kv, v) = (
        cfg.n_embd as u64,
        cfg.n_ff as u64,
        cfg.q_dim() as u64,
        cfg.kv_dim() as u64,
        cfg.vocab_size as u64,
    );
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
        match cfg.experts {
            None => {
                f(&b("ffn_gate"), &[d, ff], true)?;
                f(&b("ffn_up"), &[d, ff], true)?;
                f(&b("ffn_down"), &[ff, d], true)?;
            }
            Some(x) => {
                let e = x.n_expert as u64;
                f(&b("ffn_gate_inp"), &[d, e], true)?;
                f(&b("ffn_gate_exps"), &[d, ff, e], true)?;
                f(&b("ffn_up_exps"), &[d, ff, e], true)?;
                f(&b("ffn_down_exps"), &[ff, d, e], true)?;
            }
        }
        let o = &cfg.arch;
        if o.qkv_bias {
            f(&format!("blk.{i}.attn_q.bias"), &[q], false)?;
            f(&format!("blk.{i}.attn_k.bias"), &[kv], false)?;
            f(&format!("blk.{i}.attn_v.bias"), &[kv], false)?;
        }
        if o.qk_norm {
            f(&b("attn_q_norm"), &[cfg.head_dim as u64], false)?;
            f(&b("attn_k_norm"), &[cfg.head_dim as u64], false)?;
        }
        if o.post_norms {
            f(&b("post_attention_norm"), &[d], false)?;
            f(&b("post_ffw_norm"), &[d], false)?;
        }
    }
    Ok(())
}

/// Tensor bytes that are at hand (a memory map, a file read into memory): read
/// synchronously. Every such source is also a [`TensorSource`].
pub trait TensorBytes {
    fn bytes(&self, info: &TensorInfo) -> Result<&[u8], Error>;
}

impl<T: TensorBytes + ?Sized> TensorBytes for Box<T> {
    fn bytes(&self, info: &TensorInfo) -> Result<&[u8], Error> {
        (**self).bytes(info)
    }
}

/// A tensor's bytes on their way: borrowed from memory natively, fetched (owned) in the
/// browser. Not `Send`: browser futures never are.
pub type TensorFuture<'a> = Pin<Box<dyn Future<Output = Result<Cow<'a, [u8]>, Error>> + 'a>>;

/// Where the loader gets each tensor's bytes. Async because in the browser each tensor
/// is fetched (a range request or a `Blob.slice`) just before it goes to its GPU buffer,
/// so the whole file never sits in memory; the loader asks for one tensor at a time
/// (the parts of a fused matrix together) and drops its bytes once they are uploaded.
pub trait TensorSource {
    /// The whole tensor.
    fn fetch<'a>(&'a self, info: &'a TensorInfo) -> TensorFuture<'a>;

    /// The most bytes the loader should ask for at once: matrices larger than this are
    /// uploaded piece by piece (whole rows, at least one) through
    /// [`fetch_range`](Self::fetch_range), so a fetching source holds one piece at a time.
    /// Sources whose bytes are in memory have no limit.
    fn max_piece(&self) -> u64 {
        u64::MAX
    }

    /// Bytes `range` of the tensor (offsets from its first byte). The default fetches the
    /// whole tensor and keeps the range (borrowed bytes are not copied).
    fn fetch_range<'a>(&'a self, info: &'a TensorInfo, range: Range<u64>) -> TensorFuture<'a> {
        Box::pin(async move {
            let all = self.fetch(info).await?;
            let slice = |len: usize| {
                let bad = || {
                    Error::Source(format!(
                        "bytes {range:?} of tensor {} (it has {len})",
                        info.name
                    ))
                };
                let end = usize::try_from(range.end).map_err(|_| bad())?;
                if range.start > range.end || end > len {
                    return Err(bad());
                }
                Ok(range.start as usize..end)
            };
            Ok(match all {
                Cow::Borrowed(b) => Cow::Borrowed(&b[slice(b.len())?]),
                Cow::Owned(v) => Cow::Owned(v[slice(v.len())?].to_vec()),
            })
        })
    }
}

impl<T: TensorBytes> TensorSource for T {
    fn fetch<'a>(&'a self, info: &'a TensorInfo) -> TensorFuture<'a> {
        Box::pin(std::future::ready(self.bytes(info).map(Cow::Borrowed)))
    }
}

/// Appends bytes `bytes` of tensor `t` to `writer`, a piece of at most the source's
/// [`max_piece`](TensorSource::max_piece) (whole rows, at least one) at a time.
async fn stream_rows(
    gpu: &Gpu,
    src: &dyn TensorSource,
    t: &TensorInfo,
    bytes: Range<u64>,
    writer: &mut MatrixWriter<'_>,
) -> Result<(), Error> {
    let row_bytes = t.row_bytes().max(1);
    let piece = (src.max_piece() / row_bytes)
        .max(1)
        .saturating_mul(row_bytes);
    let mut at = bytes.start;
    while at < bytes.end {
        let end = at.saturating_add(piece).min(bytes.end);
        writer.push(gpu, &src.fetch_range(t, at..end).await?)?;
        at = end;
    }
    Ok(())
}

/// A matrix of the rows of `parts` (byte ranges of tensors of one type, whole rows, back
/// to back), streamed in.
async fn streamed(
    gpu: &Gpu,
    src: &dyn TensorSource,
    name: &str,
    parts: &[(&TensorInfo, Range<u64>)],
) -> Result<QMatrix, Error> {
    let (ty, k) = (parts[0].0.ty, parts[0].0.row_elems() as u32);
    let rows = parts
        .iter()
        .map(|(t, bytes)| (bytes.end - bytes.start) / t.row_bytes().max(1))
        .sum();
    let m = QMatrix::allocate(gpu, name, ty, k, rows).await?;
    let mut writer = m.writer();
    for (t, bytes) in parts {
        stream_rows(gpu, src, t, bytes.clone(), &mut writer).await?;
    }
    writer.finish(gpu)?;
    Ok(m)
}

/// [`streamed`] of whole tensors.
async fn streamed_whole(
    gpu: &Gpu,
    src: &dyn TensorSource,
    name: &str,
    tensors: &[&TensorInfo],
) -> Result<QMatrix, Error> {
    let parts: Vec<_> = tensors.iter().map(|&t| (t, 0..t.n_bytes())).collect();
    streamed(gpu, src, name, &parts).await
}

/// A whole GGUF file in memory (or memory-mapped).
pub struct FileBytes<'a> {
    pub file: &'a GgufFile,
    pub bytes: &'a [u8],
}

impl TensorBytes for FileBytes<'_> {
    fn bytes(&self, info: &TensorInfo) -> Result<&[u8], Error> {
        Ok(self.file.tensor_data(self.bytes, info)?)
    }
}

async fn vector(
    gpu: &Gpu,
    file: &GgufFile,
    src: &dyn TensorSource,
    name: &str,
) -> Result<wgpu::Buffer, Error> {
    vectors(gpu, file, src, name, &[name.to_string()]).await
}

/// A norm's gain before matrix products (the layers' pre-norms): matvec's norm
/// prologue reads it beside x, so it is made as x is (`kernels::product_input`).
async fn norm_gain(
    gpu: &Gpu,
    file: &GgufFile,
    src: &dyn TensorSource,
    name: &str,
    uniform_x: bool,
) -> Result<wgpu::Buffer, Error> {
    let values = vector_values(file, src, &[name.to_string()]).await?;
    let bytes: &[u8] = bytemuck::cast_slice(&values);
    let buffer = product_input(gpu, name, bytes.len() as u64, uniform_x).await?;
    gpu.write(&buffer, 0, bytes);
    Ok(buffer)
}

/// Vectors `names` as f32, one after another in one buffer.
async fn vectors(
    gpu: &Gpu,
    file: &GgufFile,
    src: &dyn TensorSource,
    label: &str,
    names: &[String],
) -> Result<wgpu::Buffer, Error> {
    let values = vector_values(file, src, names).await?;
    Ok(gpu
        .storage_with(label, bytemuck::cast_slice(&values))
        .await?)
}

/// The values of vectors `names` as f32, one after another.
async fn vector_values(
    file: &GgufFile,
    src: &dyn TensorSource,
    names: &[String],
) -> Result<Vec<f32>, Error> {
    let mut values = Vec::new();
    for name in names {
        let t = file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        values.extend(
            dequantize(t.ty, &src.fetch(t).await?, t.n_elements() as usize)
                .map_err(|e| ModelError::InvalidConfig(format!("tensor {name}: {e}")))?,
        );
    }
    Ok(values)
}

async fn matrix(
    gpu: &Gpu,
    file: &GgufFile,
    src: &dyn TensorSource,
    name: &str,
) -> Result<QMatrix, Error> {
    let t = file
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    streamed_whole(gpu, src, name, &[t]).await
}

/// The matrices of a 3-D expert tensor [k, rows, experts], one per expert.
async fn per_expert(
    gpu: &Gpu,
    file: &GgufFile,
    src: &dyn TensorSource,
    name: &str,
    n_expert: u32,
) -> Result<Vec<QMatrix>, Error> {
    let t = file
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
    let per = t.n_bytes() / n_expert as u64;
    let mut out = Vec::with_capacity(n_expert as usize);
    for e in 0..n_expert as u64 {
        out.push(
            streamed(
                gpu,
                src,
                &format!("{name}[{e}]"),
                &[(t, e * per..(e + 1) * per)],
            )
            .await?,
        );
    }
    Ok(out)
}

async fn feed_forward(
    gpu: &Gpu,
    file: &GgufFile,
    cfg: &ModelConfig,
    src: &dyn TensorSource,
    i: u32,
) -> Result<FeedForward, Error> {
    let b = |n: &str| format!("blk.{i}.{n}.weight");
    Ok(match cfg.experts {
        None => FeedForward::Dense {
            gate_up: fused(
                gpu,
                file,
                src,
                &format!("blk.{i}.ffn_gate_up"),
                &[b("ffn_gate"), b("ffn_up")],
            )
            .await?,
            down: matrix(gpu, file, src, &b("ffn_down")).await?,
        },
        Some(x) => FeedForward::Experts {
            router: matrix(gpu, file, src, &b("ffn_gate_inp")).await?,
            gate: per_expert(gpu, file, src, &b("ffn_gate_exps"), x.n_expert).await?,
            up: per_expert(gpu, file, src, &b("ffn_up_exps"), x.n_expert).await?,
            down: per_expert(gpu, file, src, &b("ffn_down_exps"), x.n_expert).await?,
        },
    })
}

async fn fused(
    gpu: &Gpu,
    file: &GgufFile,
    src: &dyn TensorSource,
    name: &str,
    parts: &[String],
) -> Result<Fused, Error> {
    let infos: Vec<&TensorInfo> = parts
        .iter()
        .map(|p| {
            file.tensor(p)
                .ok_or_else(|| ModelError::MissingTensor(p.clone()))
        })
        .collect::<Result<_, _>>()?;
    if infos.iter().all(|t| t.ty == infos[0].ty) {
        return Ok(Fused {
            parts: vec![(streamed_whole(gpu, src, name, &infos).await?, 0)],
        });
    }
    let mut out = Vec::new();
    let mut offset = 0;
    for (p, t) in parts.iter().zip(&infos) {
        let m = streamed_whole(gpu, src, p, &[t]).await?;
        let rows = m.n;
        out.push((m, offset));
        offset += rows;
    }
    Ok(Fused { parts: out })
}

impl ModelWeights {
    /// Checks every tensor, then uploads them.
    /// `uniform_x`: the tuning's `matvec_x_uniform` (the norm gains are made as matvec's
    /// inputs are).
    pub async fn upload(
        gpu: &Gpu,
        file: &GgufFile,
        cfg: &ModelConfig,
        src: &dyn TensorSource,
        uniform_x: bool,
    ) -> Result<ModelWeights, Error> {
        check_tensors(file, cfg)?;
        let token_embd = matrix(gpu, file, src, "token_embd.weight").await?;
        let output = if cfg.tied_embeddings {
            None
        } else {
            Some(matrix(gpu, file, src, "output.weight").await?)
        };
        let output_norm = vector(gpu, file, src, "output_norm.weight").await?;
        let mut layers = Vec::with_capacity(cfg.n_layer as usize);
        let o = &cfg.arch;
        for i in 0..cfg.n_layer {
            let b = |n: &str| format!("blk.{i}.{n}.weight");
            let qkv_bias = match o.qkv_bias {
                true => {
                    let names = ["q", "k", "v"].map(|p| format!("blk.{i}.attn_{p}.bias"));
                    Some(vectors(gpu, file, src, &format!("blk.{i}.attn_qkv.bias"), &names).await?)
                }
                false => None,
            };
            let qk_norm = match o.qk_norm {
                true => Some(
                    vectors(
                        gpu,
                        file,
                        src,
                        &format!("blk.{i}.attn_qk_norm"),
                        &[b("attn_q_norm"), b("attn_k_norm")],
                    )
                    .await?,
                ),
                false => None,
            };
            let post_norms = match o.post_norms {
                true => Some((
                    vector(gpu, file, src, &b("post_attention_norm")).await?,
                    vector(gpu, file, src, &b("post_ffw_norm")).await?,
                )),
                false => None,
            };
            layers.push(LayerWeights {
                qkv_bias,
                qk_norm,
                post_norms,
                attn_norm: norm_gain(gpu, file, src, &b("attn_norm"), uniform_x).await?,
                qkv: fused(
                    gpu,
                    file,
                    src,
                    &format!("blk.{i}.attn_qkv"),
                    &[b("attn_q"), b("attn_k"), b("attn_v")],
                )
                .await?,
                attn_out: matrix(gpu, file, src, &b("attn_output")).await?,
                ffn_norm: norm_gain(gpu, file, src, &b("ffn_norm"), uniform_x).await?,
                ffn: feed_forward(gpu, file, cfg, src, i).await?,
            });
        }
        let mut bytes = token_embd.bytes() + output.as_ref().map_or(0, |m| m.bytes());
        for l in &layers {
            bytes += l.qkv.parts.iter().map(|(m, _)| m.bytes()).sum::<u64>()
                + l.attn_out.bytes()
                + l.ffn.bytes();
        }
        Ok(ModelWeights {
            token_embd,
            output,
            output_norm,
            layers,
            bytes,
        })
    }
}
