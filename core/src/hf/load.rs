//! [`HfModel`]: a Hugging Face folder as the engine loads it — GGUF metadata and tensor
//! infos in memory — and [`HfTensors`], the tensor bytes read from its safetensors files.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::BTreeMap;

use super::layout::{ExpectedTensor, expected_tensors, is_ignored};
use super::permute::RopeOrder;
use super::shards::{StoredTensor, parse_index, read_shards};
use super::transform::{Conversion, ggml_type, matrix_type};
use super::{HfConfig, HfError};
use crate::gguf::{DEFAULT_ALIGNMENT, GgufFile, Metadata, TensorInfo, WRITER_VERSION};
use crate::model::TensorBytes;
use crate::quant::GgmlType;

/// How the weights are typed on the way in.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Encode every matrix as this type (quantize-on-load, or the `--type` of a
    /// conversion); norms and biases then become F32. `None` keeps the stored types.
    pub matrix_type: Option<GgmlType>,
}

/// One tensor: where it is stored and what it becomes.
#[derive(Clone, Debug)]
struct Planned {
    stored: StoredTensor,
    conversion: Conversion,
}

/// A parsed Hugging Face model: the config, and the GGUF view of it the engine loads.
#[derive(Debug)]
pub struct HfModel {
    pub config: HfConfig,
    /// GGUF metadata and tensor infos (GGUF names and dimensions, the types the tensors
    /// are converted to). Offsets are those of a GGUF file holding the converted tensors;
    /// the bytes come from [`HfModel::tensors`], not from a GGUF file.
    pub file: GgufFile,
    /// By GGUF name.
    planned: BTreeMap<String, Planned>,
}

impl HfModel {
    /// Parses `config.json`, the index when the checkpoint is sharded, and the headers of
    /// the safetensors files (name and bytes of each), and checks every tensor against
    /// the config before anything is converted.
    pub fn parse(
        config_json: &[u8],
        index_json: Option<&[u8]>,
        shards: &[(&str, &[u8])],
        options: &LoadOptions,
    ) -> Result<HfModel, HfError> {
        let config = HfConfig::from_json(config_json)?;
        let index = index_json.map(parse_index).transpose()?;
        let mut stored = read_shards(shards, index.as_ref())?;
        let expected = expected_tensors(&config);
        if let Some(name) = stored
            .keys()
            .find(|n| !is_ignored(n, &config) && !expected.iter().any(|e| e.hf_name == **n))
        {
            return Err(HfError::UnexpectedTensor(name.clone()));
        }
        let mut metadata = Metadata::new();
        for (key, value) in config.gguf_metadata() {
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(expected.len());
        let mut planned = BTreeMap::new();
        let mut offset = 0u64;
        for e in &expected {
            let t = stored
                .remove(&e.hf_name)
                .ok_or_else(|| HfError::MissingTensor(e.hf_name.clone()))?;
            let conversion = plan(e, &t, options)?;
            let info = TensorInfo {
                name: e.gguf_name.clone(),
                dims: e.gguf_dims(),
                ty: conversion.to,
                offset,
            };
            offset += info.n_bytes().next_multiple_of(DEFAULT_ALIGNMENT);
            tensors.push(info);
            planned.insert(
                e.gguf_name.clone(),
                Planned {
                    stored: t,
                    conversion,
                },
            );
        }
        let file = GgufFile {
            version: WRITER_VERSION,
            metadata,
            tensors,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
        };
        Ok(HfModel {
            config,
            file,
            planned,
        })
    }

    /// The tensors' bytes, from the safetensors files given to [`HfModel::parse`] (the
    /// same files, in the same order).
    pub fn tensors<'a>(&'a self, shards: &[&'a [u8]]) -> HfTensors<'a> {
        HfTensors {
            model: self,
            shards: shards.to_vec(),
            converted: self
                .file
                .tensors
                .iter()
                .map(|t| (t.name.clone(), OnceCell::new()))
                .collect(),
        }
    }
}

/// Checks a stored tensor against what the config expects and says what it becomes.
fn plan(
    e: &ExpectedTensor,
    t: &StoredTensor,
    options: &LoadOptions,
) -> Result<Conversion, HfError> {
    let from = ggml_type(t.dtype).ok_or_else(|| HfError::UnsupportedDtype {
        tensor: e.hf_name.clone(),
        dtype: format!("{:?}", t.dtype),
    })?;
    if t.shape != e.shape {
        return Err(HfError::ShapeMismatch {
            tensor: e.hf_name.clone(),
            expected: e.shape.clone(),
            found: t.shape.clone(),
        });
    }
    let row_elems = if e.is_matrix() { e.shape[1] } else { 1 };
    let to = match options.matrix_type {
        None => from,
        Some(ty) if e.is_matrix() => matrix_type(ty, row_elems, e.lm_head),
        Some(_) => GgmlType::F32,
    };
    Ok(Conversion {
        from,
        to,
        row_elems,
        rope: e.rope_heads.map(|h| (h, RopeOrder::ToGguf)),
    })
}

/// The tensor bytes of an [`HfModel`], converted to their GGUF types and order.
pub struct HfTensors<'a> {
    model: &'a HfModel,
    shards: Vec<&'a [u8]>,
    /// Converted tensors, kept while the source lives (the engine borrows them to upload).
    converted: BTreeMap<String, OnceCell<Vec<u8>>>,
}

impl<'a> HfTensors<'a> {
    /// The bytes of the tensor with GGUF name `name`: borrowed from the file when they
    /// need no conversion, else converted now (and not kept).
    pub fn convert(&self, name: &str) -> Result<Cow<'a, [u8]>, HfError> {
        let p = self
            .model
            .planned
            .get(name)
            .ok_or_else(|| HfError::MissingTensor(name.to_string()))?;
        let shard = self.shards.get(p.stored.shard).copied().unwrap_or_default();
        let bytes = shard
            .get(p.stored.range.clone())
            .ok_or_else(|| HfError::BadTensor {
                tensor: name.to_string(),
                reason: format!(
                    "its bytes {:?} lie outside the {} bytes given for its file",
                    p.stored.range,
                    shard.len()
                ),
            })?;
        p.conversion.apply(name, bytes)
    }
}

impl TensorBytes for HfTensors<'_> {
    fn bytes(&self, info: &TensorInfo) -> Result<&[u8], crate::Error> {
        let cell = self
            .converted
            .get(&info.name)
            .ok_or_else(|| HfError::MissingTensor(info.name.clone()))?;
        if let Some(done) = cell.get() {
            return Ok(done);
        }
        Ok(match self.convert(&info.name)? {
            Cow::Borrowed(b) => b,
            Cow::Owned(v) => cell.get_or_init(|| v),
        })
    }
}
