//! Tensor bytes from one encoding to another: RoPE row order, then type (F32, F16 or BF16
//! from safetensors; any type the CPU reference decodes from GGUF; any type it encodes).

use std::borrow::Cow;

use safetensors::Dtype;

use super::HfError;
use super::permute::{RopeOrder, permute_rows};
use crate::quant::{GgmlType, dequantize, quantize};

/// The GGML type of a safetensors dtype Wisp reads.
pub(super) fn ggml_type(dtype: Dtype) -> Option<GgmlType> {
    match dtype {
        Dtype::F32 => Some(GgmlType::F32),
        Dtype::F16 => Some(GgmlType::F16),
        Dtype::BF16 => Some(GgmlType::BF16),
        _ => None,
    }
}

/// The safetensors dtype of a GGML type a Hugging Face folder can hold.
pub fn safetensors_dtype(ty: GgmlType) -> Option<Dtype> {
    match ty {
        GgmlType::F32 => Some(Dtype::F32),
        GgmlType::F16 => Some(Dtype::F16),
        GgmlType::BF16 => Some(Dtype::BF16),
        _ => None,
    }
}

/// The type a matrix whose rows hold `row_len` elements gets when `ty` is asked for.
///
/// As llama.cpp's quantizer: the matrix that makes the logits (`lm_head`) stays at 8 bits
/// or more when lower types are asked for, since its errors go straight into every logit
/// (llama.cpp uses Q6_K, or Q8_0 where rows are not whole super-blocks; Wisp has no Q6_K
/// quantizer and uses Q8_0). K-quants need rows of whole 256-element super-blocks; for
/// other rows llama.cpp falls back to a 32-element type of about the same size.
pub fn matrix_type(ty: GgmlType, row_len: u64, lm_head: bool) -> GgmlType {
    let ty = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0 => ty,
        _ if lm_head => GgmlType::Q8_0,
        _ => ty,
    };
    if row_len.is_multiple_of(ty.block_elems() as u64) {
        return ty;
    }
    match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    }
}

/// What to do to one tensor's bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Conversion {
    pub from: GgmlType,
    pub to: GgmlType,
    /// Elements per row (the innermost dimension; 1 for a vector whose rows are permuted).
    pub row_elems: u64,
    pub rope: Option<(u32, RopeOrder)>,
}

impl Conversion {
    /// Applies the conversion to `bytes` (the tensor `name`'s, for errors).
    pub fn apply<'a>(&self, name: &str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, HfError> {
        let convert_err = |source| HfError::Convert {
            tensor: name.to_string(),
            source,
        };
        let mut data = Cow::Borrowed(bytes);
        if let Some((heads, order)) = self.rope {
            let row_bytes = self.from.bytes_for(self.row_elems).unwrap_or(0) as usize;
            let whole_heads = bytes.len().checked_div(row_bytes).is_some_and(|n_rows| {
                bytes.len().is_multiple_of(row_bytes) && n_rows.is_multiple_of(2 * heads as usize)
            });
            if !whole_heads {
                return Err(HfError::BadTensor {
                    tensor: name.to_string(),
                    reason: format!(
                        "{} bytes are not {heads} heads of an even number of rows",
                        bytes.len()
                    ),
                });
            }
            data = Cow::Owned(permute_rows(bytes, row_bytes, heads, order));
        }
        if self.from != self.to {
            let n = self.from.block_elems() as u64
                * (data.len() as u64 / self.from.block_bytes() as u64);
            let values = dequantize(self.from, &data, n as usize).map_err(convert_err)?;
            data = Cow::Owned(quantize(self.to, &values).map_err(convert_err)?);
        }
        Ok(data)
    }
}
