//! wisp-core: the engine of Wisp, a portable LLM inference runtime on wgpu.
//!
//! The crate stays portable to `wasm32-unknown-unknown`: no filesystem, no threads and no
//! environment variables. Callers hand in bytes and settings; GPU work is awaited (in the
//! browser nothing blocks; natively a readback blocks its thread while the device works).
//! See `ARCHITECTURE.md` at the repository root for the map of modules and the path of
//! one token through the engine.

pub mod defaults;
pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod hf;
pub mod kernels;
pub mod kv;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod scheduler;
pub mod sequence;
pub mod speculative;
pub mod tokenizer;

pub use error::{Error, Result};
