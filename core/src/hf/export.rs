//! GGUF → Hugging Face: the config, the tensors (HF names, shapes and row order, in F32,
//! F16 or BF16) and how they are split into safetensors files.

use std::borrow::Cow;

use safetensors::Dtype;
use serde_json::{Value as Json, json};

use super::layout::expected_tensors;
use super::permute::RopeOrder;
use super::shards::SINGLE_FILE;
use super::transform::{Conversion, safetensors_dtype};
use super::{HfConfig, HfError};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::TensorBytes;
use crate::quant::GgmlType;

/// One tensor of the folder being written.
#[derive(Clone, Debug)]
pub struct ExportTensor {
    pub hf_name: String,
    /// Outermost dimension first, as safetensors stores it.
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// The GGUF tensor it comes from.
    pub source: TensorInfo,
    conversion: Conversion,
}

impl ExportTensor {
    /// Bytes the tensor takes in the safetensors file.
    pub fn n_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }

    /// The converted bytes, read from `src`.
    pub fn data<'a>(&self, src: &'a dyn TensorBytes) -> Result<Cow<'a, [u8]>, crate::Error> {
        let bytes = src.bytes(&self.source)?;
        Ok(self.conversion.apply(&self.hf_name, bytes)?)
    }
}

/// The model a GGUF file holds, as a Hugging Face folder with tensors of type `ty` (F32,
/// F16 or BF16): its config and its tensors in llama.cpp's order. Every tensor is checked
/// against the config; a tensor the architecture does not have is an error.
pub fn plan(file: &GgufFile, ty: GgmlType) -> Result<(HfConfig, Vec<ExportTensor>), HfError> {
    let dtype = safetensors_dtype(ty).ok_or_else(|| HfError::UnsupportedDtype {
        tensor: "(every tensor)".into(),
        dtype: ty.name().into(),
    })?;
    let config = HfConfig::from_gguf(file)?;
    let expected = expected_tensors(&config);
    if let Some(t) = file
        .tensors
        .iter()
        .find(|t| !expected.iter().any(|e| e.gguf_name == t.name))
    {
        return Err(HfError::UnexpectedTensor(t.name.clone()));
    }
    let mut out = Vec::with_capacity(expected.len());
    for e in expected {
        let t = file
            .tensor(&e.gguf_name)
            .ok_or_else(|| HfError::MissingTensor(e.gguf_name.clone()))?;
        if t.dims != e.gguf_dims() {
            return Err(HfError::ShapeMismatch {
                tensor: e.gguf_name.clone(),
                expected: e.gguf_dims(),
                found: t.dims.clone(),
            });
        }
        let row_elems = if e.is_matrix() { t.row_elems() } else { 1 };
        let conversion = Conversion {
            from: t.ty,
            to: ty,
            row_elems,
            rope: e.rope_heads.map(|h| (h, RopeOrder::ToHf)),
        };
        out.push(ExportTensor {
            hf_name: e.hf_name.clone(),
            shape: e.shape.iter().map(|&d| d as usize).collect(),
            dtype,
            source: t.clone(),
            conversion,
        });
    }
    Ok((config, out))
}

/// `torch_dtype` of `config.json` for a safetensors dtype.
pub fn torch_dtype(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F16 => "float16",
        Dtype::BF16 => "bfloat16",
        _ => "float32",
    }
}

/// Splits the tensors (by their byte sizes, in order) into files of at most `max_bytes`
/// each (a tensor larger than that gets a file of its own). One file is `model.safetensors`;
/// several are `model-0000i-of-0000n.safetensors`. Returns each file's name and tensor
/// indices.
pub fn shards(sizes: &[usize], max_bytes: usize) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current = 0usize;
    for (i, &size) in sizes.iter().enumerate() {
        match groups.last_mut() {
            Some(group) if current + size <= max_bytes => {
                group.push(i);
                current += size;
            }
            _ => {
                groups.push(vec![i]);
                current = size;
            }
        }
    }
    let n = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let name = if n == 1 {
                SINGLE_FILE.to_string()
            } else {
                format!("model-{:05}-of-{n:05}.safetensors", i + 1)
            };
            (name, g)
        })
        .collect()
}

/// `model.safetensors.index.json` for tensors split into `files` (as [`shards`] returns).
pub fn index_json(tensors: &[ExportTensor], files: &[(String, Vec<usize>)]) -> Json {
    let total: usize = tensors.iter().map(ExportTensor::n_bytes).sum();
    let mut map = serde_json::Map::new();
    for (file, members) in files {
        for &i in members {
            map.insert(tensors[i].hf_name.clone(), file.clone().into());
        }
    }
    json!({ "metadata": { "total_size": total }, "weight_map": map })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_fill_files_in_order() {
        let s = shards(&[4, 4, 4, 10, 1], 8);
        let groups: Vec<&[usize]> = s.iter().map(|(_, g)| g.as_slice()).collect();
        assert_eq!(groups, [&[0, 1][..], &[2], &[3], &[4]]);
        assert_eq!(s[0].0, "model-00001-of-00004.safetensors");
        assert_eq!(s[3].0, "model-00004-of-00004.safetensors");
        assert_eq!(
            shards(&[3, 3], 100),
            vec![(SINGLE_FILE.to_string(), vec![0, 1])]
        );
    }
}
