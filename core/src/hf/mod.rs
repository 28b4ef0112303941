//! Hugging Face model folders: `config.json`, one or several `*.safetensors` files (with
//! `model.safetensors.index.json` when sharded), turned in memory into what the engine
//! loads from a GGUF file, and back.
//!
//! The engine takes a parsed [`GgufFile`](crate::gguf::GgufFile) (metadata and tensor infos)
//! and a [`TensorBytes`](crate::model::TensorBytes). [`HfModel::parse`] builds both from a
//! folder's bytes: `config.json` becomes the GGUF metadata keys, each HF tensor name its GGUF
//! name, and the tensor bytes are read from the safetensors files (converted, re-ordered
//! or quantized on the way where needed). [`export`] goes the other way, from a GGUF model
//! to the config and tensors of a folder. No filesystem access here: the caller reads or
//! maps the files and passes their bytes.
//!
//! One difference of layout is not a renaming: Hugging Face stores the query and key rows
//! of llama models for RoPE that rotates the two halves of each head, GGUF (llama.cpp's
//! converter) for RoPE that rotates adjacent pairs, which Wisp's kernels apply. Those rows
//! are permuted on the way in and back on the way out (`permute.rs`). Qwen2 is not
//! permuted: llama.cpp runs it with half-split RoPE on the rows as Hugging Face has them.

mod config;
pub mod export;
mod layout;
mod load;
mod permute;
mod shards;
mod transform;

pub use config::{Architecture, HfConfig};
pub use layout::{ExpectedTensor, expected_tensors};
pub use load::{HfModel, HfTensors, LoadOptions};
pub use shards::{INDEX_FILE, SINGLE_FILE, shard_files};
pub use transform::{matrix_type, safetensors_dtype};

use crate::gguf::GgufError;
use crate::quant::DequantError;
use crate::tokenizer::TokenizerError;

/// Why a Hugging Face folder (or a conversion to one) failed. Every variant names the file,
/// key or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{file}: {reason}")]
    BadJson { file: String, reason: String },
    #[error("{file}: missing key {key}")]
    MissingKey { file: String, key: String },
    #[error("{file}: {key}: {reason}")]
    BadKey {
        file: String,
        key: String,
        reason: String,
    },
    #[error("unsupported architecture {0:?} (Wisp converts: llama, qwen2)")]
    UnsupportedArchitecture(String),
    #[error("tensor {tensor}: unsupported type {dtype} (Wisp reads F32, F16 and BF16 tensors)")]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("the model has no tensor {0}")]
    MissingTensor(String),
    #[error("unexpected tensor {0}: the architecture has no such weight")]
    UnexpectedTensor(String),
    #[error("tensor {tensor} has shape {found:?}, but the config implies {expected:?}")]
    ShapeMismatch {
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("{file}: {reason}")]
    Safetensors { file: String, reason: String },
    #[error(
        "{INDEX_FILE} puts tensor {tensor} in {shard}, but that file is missing or does not hold it"
    )]
    MissingShard { shard: String, tensor: String },
    #[error("tensor {tensor}: {reason}")]
    BadTensor { tensor: String, reason: String },
    #[error("tensor {tensor}: {source}")]
    Convert {
        tensor: String,
        source: DequantError,
    },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

impl HfError {
    fn bad_key(file: &str, key: &str, reason: impl Into<String>) -> HfError {
        HfError::BadKey {
            file: file.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}
