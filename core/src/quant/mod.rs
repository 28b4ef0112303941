//! Weight quantization: the GGML block formats and a CPU dequantization reference.
//!
//! On the GPU, blocks are uploaded exactly as the file stores them and dequantized inside
//! the shaders; the CPU code here is the reference those shaders are tested against.

mod dequant;
mod types;

pub use dequant::*;
pub use types::GgmlType;
