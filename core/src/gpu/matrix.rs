//! Weight matrices on the GPU, kept as their GGUF blocks (never expanded to floats),
//! split by rows into several buffers when one would exceed the storage-binding limit.

use crate::quant::GgmlType;

use super::{Gpu, GpuError};

/// Buffers of a split matrix start on multiples of this many rows where the binding
/// limit leaves room for that many: a multiple of every word alignment below, and of
/// every matvec workgroup's rows, so that the argmax epilogue's slots of one buffer
/// follow on from the one before (`matvec.wgsl`, `OUT = argmax`).
pub const SPLIT_ROW_ALIGN: u64 = 2048;

/// The row multiple a split matrix's buffers start on when `fitting` rows fit in one:
/// the largest power of two up to [`SPLIT_ROW_ALIGN`] (under tiny binding limits, fewer
/// than a workgroup's rows; the LM head then keeps its logits, `Kernels::argmax_fits`).
fn split_alignment(fitting: u64) -> u64 {
    match fitting.min(SPLIT_ROW_ALIGN) {
        0 => 1,
        f => 1 << f.ilog2(),
    }
}

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
    pub async fn upload(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        k: u32,
        parts: &[&[u8]],
    ) -> Result<QMatrix, GpuError> {
        let row_bytes = Self::row_bytes_of(name, ty, k)?;
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let m = Self::allocate(gpu, name, ty, k, total / row_bytes).await?;
        let mut writer = m.writer();
        for part in parts {
            writer.push(gpu, part)?;
        }
        writer.finish(gpu)?;
        Ok(m)
    }

    fn row_bytes_of(name: &str, ty: GgmlType, k: u32) -> Result<u64, GpuError> {
        ty.bytes_for(k as u64).ok_or_else(|| GpuError::Validation {
            what: name.to_string(),
            message: format!("a row of {k} elements is not a whole number of {ty} blocks"),
        })
    }

    /// Creates the buffers of an `n`-row matrix, split by rows where one buffer would
    /// exceed the storage-binding limit; a [`writer`](Self::writer) fills them.
    pub async fn allocate(
        gpu: &Gpu,
        name: &str,
        ty: GgmlType,
        k: u32,
        n: u64,
    ) -> Result<QMatrix, GpuError> {
        let row_bytes = Self::row_bytes_of(name, ty, k)?;
        // Buffers end on whole words (writes must start on one): rows with 2 bytes over a
        // word go in pairs, odd-sized rows in fours.
        let word_rows = 4 / gcd(row_bytes, 4);
        // Leave room for the tail padding every storage buffer gets.
        let fitting = gpu.caps.max_storage_binding.saturating_sub(16) / row_bytes;
        let rows_per_chunk = if fitting >= n {
            n.max(1)
        } else {
            let align = split_alignment(fitting).max(word_rows);
            fitting / align * align
        };
        if rows_per_chunk == 0 {
            return Err(GpuError::BufferTooLarge {
                what: format!("{word_rows} rows of {name}"),
                bytes: word_rows * row_bytes,
                limit: gpu.caps.max_storage_binding,
            });
        }
        let mut chunks = Vec::new();
        let mut first_row = 0u64;
        while first_row < n {
            let rows = rows_per_chunk.min(n - first_row);
            let buffer = gpu
                .storage(
                    &format!("{name} rows {first_row}..{}", first_row + rows),
                    rows * row_bytes,
                )
                .await?;
            chunks.push(MatrixChunk {
                buffer,
                first_row: first_row as u32,
                n_rows: rows as u32,
            });
            first_row += rows;
        }
        Ok(QMatrix {
            name: name.to_string(),
            ty,
            k,
            n: n as u32,
            row_bytes: row_bytes as u32,
            chunks,
        })
    }

    /// Fills the matrix with its bytes in order, given in pieces of any size.
    pub fn writer(&self) -> MatrixWriter<'_> {
        MatrixWriter {
            m: self,
            at: 0,
            carry: Vec::new(),
        }
    }

    /// Bytes of weights the GPU holds for this matrix.
    pub fn bytes(&self) -> u64 {
        self.n as u64 * self.row_bytes as u64
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Writes a matrix's bytes in order, in pieces of any size: wgpu writes whole words at
/// word offsets, so up to 3 bytes wait for the next piece.
pub struct MatrixWriter<'m> {
    m: &'m QMatrix,
    /// Bytes written to the GPU so far (a multiple of 4).
    at: u64,
    carry: Vec<u8>,
}

impl MatrixWriter<'_> {
    fn total(&self) -> u64 {
        self.m.n as u64 * self.m.row_bytes as u64
    }

    /// Appends `data` to what was written.
    pub fn push(&mut self, gpu: &Gpu, mut data: &[u8]) -> Result<(), GpuError> {
        let pending = self.at + self.carry.len() as u64 + data.len() as u64;
        if pending > self.total() {
            return Err(GpuError::Validation {
                what: self.m.name.clone(),
                message: format!(
                    "{pending} bytes for a matrix of {} ({} rows of {})",
                    self.total(),
                    self.m.n,
                    self.m.row_bytes
                ),
            });
        }
        if !self.carry.is_empty() {
            let take = (4 - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < 4 {
                return Ok(());
            }
            let word = std::mem::take(&mut self.carry);
            self.write_words(gpu, &word);
        }
        let whole = data.len() / 4 * 4;
        self.write_words(gpu, &data[..whole]);
        self.carry.extend_from_slice(&data[whole..]);
        Ok(())
    }

    /// Writes the last bytes; fails unless every byte of the matrix was given.
    pub fn finish(mut self, gpu: &Gpu) -> Result<(), GpuError> {
        let given = self.at + self.carry.len() as u64;
        if given != self.total() {
            return Err(GpuError::Validation {
                what: self.m.name.clone(),
                message: format!("{given} bytes for a matrix of {}", self.total()),
            });
        }
        let tail = std::mem::take(&mut self.carry);
        self.write_words(gpu, &tail);
        Ok(())
    }

    /// Writes `bytes` (whole words, or the matrix's last bytes) at `self.at`, split at
    /// buffer boundaries (which fall on whole words, see [`QMatrix::allocate`]).
    fn write_words(&mut self, gpu: &Gpu, mut bytes: &[u8]) {
        let row_bytes = self.m.row_bytes as u64;
        for chunk in &self.m.chunks {
            let start = chunk.first_row as u64 * row_bytes;
            let end = start + chunk.n_rows as u64 * row_bytes;
            if bytes.is_empty() {
                break;
            }
            if self.at >= end {
                continue;
            }
            let take = ((end - self.at) as usize).min(bytes.len());
            gpu.write(&chunk.buffer, self.at - start, &bytes[..take]);
            self.at += take as u64;
            bytes = &bytes[take..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_buffers_start_on_the_largest_power_of_two_that_fits() {
        for (fitting, align) in [(0, 1), (1, 1), (3, 2), (80, 64), (481, 256), (5000, 2048)] {
            assert_eq!(split_alignment(fitting), align, "{fitting} rows fit");
        }
    }
}
