//! Weight quantization: the GGML block formats, a CPU dequantization reference, and
//! random weights for tests and benchmarks.
//!
//! On the GPU, blocks are uploaded exactly as the file stores them and dequantized inside
//! the shaders; the CPU code here is the reference those shaders are tested against.

mod dequant;
mod random;
mod types;

pub use dequant::*;
pub use random::{RandomBlocksError, fill_random_blocks, random_blocks};
pub use types::GgmlType;
