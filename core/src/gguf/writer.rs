//! GGUF writer: builds a version 3 file in memory (or streams it to any `Write`).
//!
//! Used by tests to build tiny models and by `wisp convert`. It only writes files the
//! reader accepts: every value and tensor is checked when it is added, so `to_bytes`
//! cannot fail.

use std::io::{self, Write};

use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_TENSOR_DIMS, Value};
use crate::quant::{DequantError, GgmlType, quantize};

/// The GGUF version the writer produces.
pub const WRITER_VERSION: u32 = 3;

/// Why something could not be added to a [`GgufWriter`].
#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    #[error("metadata key {key}: {reason}")]
    BadValue { key: String, reason: String },
    #[error("tensor {tensor}: {reason}")]
    BadTensor { tensor: String, reason: String },
    #[error("tensor {0} is added twice")]
    DuplicateTensor(String),
    #[error("alignment {0} is not a nonzero power of two that fits in a u32")]
    BadAlignment(u64),
    #[error("tensor {tensor}: {source}")]
    Quantize {
        tensor: String,
        source: DequantError,
    },
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF v3 file: metadata in insertion order, then tensor infos, then the tensor
/// data, each tensor padded to the alignment.
///
/// ```
/// use wisp_core::gguf::{GgufFile, GgufWriter};
/// use wisp_core::quant::GgmlType;
///
/// let mut w = GgufWriter::new();
/// w.metadata("general.architecture", "llama")?
///     .metadata("llama.block_count", 1u32)?
///     .tensor("output_norm.weight", &[4], GgmlType::F32, vec![0; 16])?;
/// let file = GgufFile::parse(&w.to_bytes())?;
/// assert_eq!(file.architecture()?, "llama");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

// A summary, not the tensor bytes (which may be gigabytes).
impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field(
                "keys",
                &self
                    .metadata
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field(
                "tensors",
                &self
                    .tensors
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Sets a metadata value. Setting a key again replaces its value in place (handy for
    /// tests that build a standard model and then break one key). `general.alignment` must
    /// be a u32 power of two and also sets the data alignment.
    pub fn metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<&mut Self, GgufWriteError> {
        let key = key.into();
        let value = value.into();
        check_value(&value, 0).map_err(|reason| GgufWriteError::BadValue {
            key: key.clone(),
            reason,
        })?;
        if key == "general.alignment" {
            match value {
                Value::U32(a) if a.is_power_of_two() => self.alignment = u64::from(a),
                _ => {
                    return Err(GgufWriteError::BadValue {
                        key,
                        reason: format!("must be a u32 power of two, not {}", value.summary()),
                    });
                }
            }
        }
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key, value)),
        }
        Ok(self)
    }

    /// Removes a metadata key (no-op when absent); removing `general.alignment` restores
    /// the default alignment.
    pub fn remove_metadata(&mut self, key: &str) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        if key == "general.alignment" {
            self.alignment = DEFAULT_ALIGNMENT;
        }
        self
    }

    /// Sets the data alignment, written as `general.alignment`.
    pub fn alignment(&mut self, alignment: u64) -> Result<&mut Self, GgufWriteError> {
        let a = u32::try_from(alignment)
            .ok()
            .filter(|a| a.is_power_of_two())
            .ok_or(GgufWriteError::BadAlignment(alignment))?;
        self.metadata("general.alignment", a)
    }

    /// Adds a tensor whose `data` is already encoded as `ty` (blocks as llama.cpp lays them
    /// out). `dims` are in GGML order (`dims[0]` is the row length).
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufWriteError> {
        let name = name.into();
        let bad = |reason: String| GgufWriteError::BadTensor {
            tensor: name.clone(),
            reason,
        };
        if dims.len() > MAX_TENSOR_DIMS as usize {
            return Err(bad(format!(
                "{} dimensions; at most {MAX_TENSOR_DIMS}",
                dims.len()
            )));
        }
        if dims.contains(&0) {
            return Err(bad(format!("dims {dims:?} contain a zero")));
        }
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(ty.block_elems() as u64) {
            return Err(bad(format!(
                "rows of {row} elements are not a whole number of {ty} blocks ({} elements)",
                ty.block_elems()
            )));
        }
        let expected = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| ty.bytes_for(n))
            .ok_or_else(|| bad(format!("dims {dims:?} overflow")))?;
        if data.len() as u64 != expected {
            return Err(bad(format!(
                "{ty} data for dims {dims:?} takes {expected} bytes, but {} were given",
                data.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufWriteError::DuplicateTensor(name));
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(self)
    }

    /// Adds a tensor from f32 values, encoding them as `ty` with [`quantize`]
    /// (F32, F16, BF16 and the simple block types).
    pub fn tensor_from_f32(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        values: &[f32],
    ) -> Result<&mut Self, GgufWriteError> {
        let name = name.into();
        let data = quantize(ty, values).map_err(|source| GgufWriteError::Quantize {
            tensor: name.clone(),
            source,
        })?;
        self.tensor(name, dims, ty, data)
    }

    /// Removes a tensor (no-op when absent).
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.name != name);
        self
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() + self.data_len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Streams the file to `w` (for files too big to build in memory twice).
    pub fn write_to<W: Write>(&self, mut w: W) -> io::Result<()> {
        w.write_all(&GGUF_MAGIC.to_le_bytes())?;
        w.write_all(&WRITER_VERSION.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_string(&mut w, key)?;
            w.write_all(&(value.value_type() as u32).to_le_bytes())?;
            write_value(&mut w, value)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_string(&mut w, &t.name)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&t.ty.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset += (t.data.len() as u64).next_multiple_of(self.alignment);
        }
        let header = self.header_len() as u64;
        write_zeros(&mut w, header.next_multiple_of(self.alignment) - header)?;
        for t in &self.tensors {
            w.write_all(&t.data)?;
            let len = t.data.len() as u64;
            write_zeros(&mut w, len.next_multiple_of(self.alignment) - len)?;
        }
        Ok(())
    }

    /// Bytes before the padding that precedes the data section.
    fn header_len(&self) -> usize {
        let kv: usize = self
            .metadata
            .iter()
            .map(|(k, v)| 8 + k.len() + 4 + encoded_len(v))
            .sum();
        let infos: usize = self
            .tensors
            .iter()
            .map(|t| 8 + t.name.len() + 4 + 8 * t.dims.len() + 4 + 8)
            .sum();
        24 + kv + infos
    }

    /// Bytes of the data section, padding included.
    fn data_len(&self) -> usize {
        let a = self.alignment as usize;
        self.tensors
            .iter()
            .map(|t| t.data.len().next_multiple_of(a))
            .sum::<usize>()
            + a
    }
}

/// Checks that an array's elements all have its declared type (the file stores the type
/// once, so a mismatch would write a file that reads back as garbage).
fn check_value(value: &Value, depth: usize) -> Result<(), String> {
    if let Value::Array(ty, items) = value {
        // The reader refuses deeper nesting (see MAX_ARRAY_DEPTH there).
        if depth >= 8 {
            return Err("arrays nested more than 8 deep".to_string());
        }
        for (i, item) in items.iter().enumerate() {
            if item.value_type() != *ty {
                return Err(format!(
                    "array element {i} is a {}, but the array holds {}",
                    item.value_type().name(),
                    ty.name()
                ));
            }
            check_value(item, depth + 1)?;
        }
    }
    Ok(())
}

fn encoded_len(v: &Value) -> usize {
    match v {
        Value::String(s) => 8 + s.len(),
        Value::Array(_, items) => 12 + items.iter().map(encoded_len).sum::<usize>(),
        other => other.value_type().fixed_size().unwrap_or(0),
    }
}

fn write_string<W: Write>(w: &mut W, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_zeros<W: Write>(w: &mut W, n: u64) -> io::Result<()> {
    const ZEROS: [u8; 64] = [0; 64];
    let mut left = n;
    while left > 0 {
        let k = left.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..k])?;
        left -= k as u64;
    }
    Ok(())
}

fn write_value<W: Write>(w: &mut W, v: &Value) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_string(w, s),
        Value::Array(ty, items) => {
            w.write_all(&(*ty as u32).to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| write_value(w, item))
        }
    }
}
