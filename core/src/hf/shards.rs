//! Safetensors files: one `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, and where each tensor lies in them.

use std::collections::BTreeMap;
use std::ops::Range;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

use super::HfError;

/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The file of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

/// A tensor in one of the files.
#[derive(Clone, Debug)]
pub(super) struct StoredTensor {
    /// Which of the files given to [`read_shards`].
    pub shard: usize,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// The tensor's bytes within its file.
    pub range: Range<usize>,
}

/// The index's `weight_map`: tensor name → file name.
pub(super) fn parse_index(index_json: &[u8]) -> Result<BTreeMap<String, String>, HfError> {
    let bad = |reason: String| HfError::BadJson {
        file: INDEX_FILE.into(),
        reason,
    };
    let root: Json = serde_json::from_slice(index_json).map_err(|e| bad(e.to_string()))?;
    let map = root
        .get("weight_map")
        .and_then(Json::as_object)
        .ok_or_else(|| HfError::MissingKey {
            file: INDEX_FILE.into(),
            key: "weight_map".into(),
        })?;
    map.iter()
        .map(|(tensor, file)| match file.as_str() {
            // A name with a path in it would let the index point outside the folder.
            Some(f) if !f.is_empty() && !f.contains(['/', '\\']) && f != ".." => {
                Ok((tensor.clone(), f.to_string()))
            }
            _ => Err(HfError::bad_key(
                INDEX_FILE,
                &format!("weight_map.{tensor}"),
                format!("{file} is not a file name in the folder"),
            )),
        })
        .collect()
}

/// The files a sharded checkpoint's index names, each once, in order of first mention.
pub fn shard_files(index_json: &[u8]) -> Result<Vec<String>, HfError> {
    let mut files: Vec<String> = Vec::new();
    for file in parse_index(index_json)?.into_values() {
        if !files.contains(&file) {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the headers of `shards` (file name, bytes) and returns every tensor by name.
/// With an index, every tensor it lists must be in the file it names.
pub(super) fn read_shards(
    shards: &[(&str, &[u8])],
    index: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, StoredTensor>, HfError> {
    let mut tensors = BTreeMap::new();
    for (i, (file, bytes)) in shards.iter().enumerate() {
        let bad = |reason: String| HfError::Safetensors {
            file: file.to_string(),
            reason,
        };
        let (header_len, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let data_start = 8 + header_len;
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            let stored = StoredTensor {
                shard: i,
                dtype: info.dtype,
                shape: info.shape.iter().map(|&d| d as u64).collect(),
                range: data_start + start..data_start + end,
            };
            if tensors.insert(name.clone(), stored).is_some() {
                return Err(bad(format!(
                    "tensor {name} is stored in more than one file"
                )));
            }
        }
    }
    if let Some(index) = index {
        for (tensor, file) in index {
            let found = tensors
                .get(tensor)
                .is_some_and(|t| shards[t.shard].0 == file);
            if !found {
                return Err(HfError::MissingShard {
                    shard: file.clone(),
                    tensor: tensor.clone(),
                });
            }
        }
    }
    Ok(tensors)
}
