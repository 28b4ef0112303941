//! GGUF files (versions 2 and 3): metadata, tensor infos and where each tensor's bytes lie.
//!
//! Parsing works on a byte slice: natively the caller memory-maps the file, in wasm it
//! passes the bytes it has. [`GgufFile::parse_header`] needs only the file's first bytes
//! (it says how many more it needs), so a browser can stream tensors afterwards.

mod reader;
mod value;
mod writer;

pub use reader::*;
pub use value::{Metadata, Value, ValueType};
pub use writer::{GgufWriteError, GgufWriter, WRITER_VERSION};

use crate::quant::GgmlType;

/// The magic number at the start of every GGUF file ("GGUF" in little-endian order).
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a GGUF file could not be read. Every variant names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error(
        "not a GGUF file: the magic number is {found:#010x}, expected {GGUF_MAGIC:#010x} (\"GGUF\")"
    )]
    BadMagic { found: u32 },
    #[error("unsupported GGUF version {0} (Wisp reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error(
        "the file is truncated: {what} needs bytes up to offset {needed}, but the file has {available}"
    )]
    Truncated {
        what: String,
        needed: u64,
        available: u64,
    },
    #[error("unsupported tensor type {ty} in tensor {tensor}")]
    UnsupportedTensorType { ty: String, tensor: String },
    #[error(
        "tensor {tensor}: its data ({start}..{end}) lies outside the file ({file_len} bytes); \
         the file is truncated or corrupt"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("missing required metadata key {0}")]
    MissingKey(String),
    #[error("metadata key {key} should be {expected}, but it is {found}")]
    WrongValueType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("malformed GGUF: {0}")]
    Malformed(String),
}

/// Where one tensor is and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGML order: `dims[0]` is the innermost (contiguous) one, so a weight
    /// matrix with `n` output rows of `k` inputs has `dims == [k, n]`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the tensor's first byte from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes the tensor occupies (its row length is a whole number of blocks: checked at parse).
    pub fn n_bytes(&self) -> u64 {
        self.ty.bytes_for(self.n_elements()).unwrap_or(0)
    }

    /// Elements per row (`dims[0]`).
    pub fn row_elems(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of every dimension but the first.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> u64 {
        self.ty.bytes_for(self.row_elems()).unwrap_or(0)
    }
}

/// A parsed GGUF header: everything but the tensor data.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where the tensor data section starts.
    pub data_offset: u64,
}
