//! wisp-web: Wisp in the browser. The same engine as natively (`wisp-core` and
//! `wisp-shaders`, unchanged) behind a small wasm-bindgen API that the demo's Web Worker
//! (`web/www/worker.js`) drives:
//!
//! - [`WispEngine::create`] opens the WebGPU device and describes the adapter;
//! - [`WispEngine::load`] reads a GGUF model through a [`ByteSource`] (an object with
//!   `size` and `read(offset, length)`), the header first and then one tensor at a time
//!   straight into its GPU buffer, so the file never sits whole in the wasm heap;
//! - [`WispEngine::chat`] / [`WispEngine::complete`] stream text to a callback;
//!   [`WispEngine::stop`] ends a generation between two tokens;
//! - [`WispEngine::logits`] returns every position's logits of a prompt (the browser test
//!   compares them with llama.cpp's).
//!
//! What differs from native lives in JavaScript, behind that source object: where bytes
//! come from (HTTP range requests, the Cache API, `Blob.slice`), and the worker that keeps
//! the page responsive. Time is `web_time` (`performance.now()` here, `Instant` natively).

mod engine;
mod request;
mod source;

pub use engine::{WispEngine, wasm_heap_bytes};
pub use source::ByteSource;
