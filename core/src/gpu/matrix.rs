//! Weight matrices on the GPU, kept as their GGUF blocks (never expanded to floats),
//! split by rows into several buffers when one would exceed the storage-binding limit.

use crate::quant::GgmlType;

use super::{Gpu, GpuError};

/// One buffer of consecutive rows.
#[derive(Clone, Debug)]
pub struct MatrixChunk {
    pub buffer: wgpu::Buffer,
    pub first_row: u32,
    pub n_rows: u32,
}

/// A matrix of `n` rows of `k` elements in format `ty`.
#[derive(Clone, Debug)]
pub struct QMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub k: u32,
    pub n: u32,
    pub row_bytes: u32,
    pub chunks: Vec<MatrixChunk>,
}

/// The GPU kernels' name for a weight format, if they have one.
pub fn gpu_weight_type(ty: GgmlType) -> Option<&'static str> {
    Some(match ty {
        GgmlType::F32 => "f32",
        GgmlType::F16 => "f16",
        GgmlType::BF16 => "bf16",
        GgmlType::Q4_0 => "q4_0",
        GgmlType::Q4_1 => "q4_1",
        GgmlType::Q5_0 => "q5_0",
        GgmlType::Q5_1 => "q5_1",
        GgmlType::Q8_0 => "q8_0",
        GgmlType::Q2_K => "q2_k",
        GgmlType::Q3_K => "q3_k",
        GgmlType::Q4_K => "q4_k",
        GgmlType::Q5_K => "q5_k",
        GgmlType::Q6_K => "q6_k",
        GgmlType::IQ4_NL => "iq4_nl",
        _ => return None,
    })
}

impl QMatrix {
    /// Uploads the rows of `parts` (each a whole number of rows in format `ty`, stored
    /// back to back in this order) as one matrix. Several parts make a fused matrix,
    /// e.g. the query, key and value projections as one.
    pub async fn upload(gpu: &Gpu, name: &str, ty: GgmlType, k: u32, parts: &[&[u8]]) -> Result<QMatrix, GpuError> {
        let row_bytes = ty.bytes_for(k as u64).ok_or_else(|| GpuError::Validation {
            what: name.to_string(),
            message: format!("a row of {k} elements is not a whole number of {ty} blocks"),
        })?;
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let n = total / row_bytes;
        // Leave room for the tail padding every storage buffer gets.
        let rows_per_chunk = ((gpu.caps.max_storage_binding.saturating_sub(16)) / row_bytes).min(n.max(1));
        if rows_per_chunk == 0 {
            return Err(GpuError::BufferTooLarge {
                what: format!("one row of {name}"),
                bytes: row_bytes,
                limit: gpu.caps.max_storage_binding,
            });
        }
        let mut chunks = Vec::new();
        let mut first_row = 0u64;
        // (part index, byte offset within it) of the next row to upload
        let mut cursor = (0usize, 0u64);
        while first_row < n {
            let rows = rows_per_chunk.min(n - first_row);
            let bytes = rows * row_bytes;
            let buffer = gpu.storage(&format!("{name} rows {first_row}..{}", first_row + rows), bytes).await?;
            let mut written = 0u64;
            while written < bytes {
                let part = parts[cursor.0];
                let available = part.len() as u64 - cursor.1;
                let take = available.min(bytes - written);
                gpu.write(&buffer, written, &part[cursor.1 as usize..(cursor.1 + take) as usize]);
                written += take;
                cursor.1 += take;
                if cursor.1 == part.len() as u64 {
                    cursor = (cursor.0 + 1, 0);
                }
            }
            chunks.push(MatrixChunk { buffer, first_row: first_row as u32, n_rows: rows as u32 });
            first_row += rows;
        }
        Ok(QMatrix { name: name.to_string(), ty, k, n: n as u32, row_bytes: row_bytes as u32, chunks })
    }

    /// Bytes of weights the GPU holds for this matrix.
    pub fn bytes(&self) -> u64 {
        self.n as u64 * self.row_bytes as u64
    }
}
