//! wisp-web: wasm-bindgen bindings over wisp-core. For now a small surface that keeps
//! the engine compiling for `wasm32-unknown-unknown` (the browser demo comes with the
//! browser issue): reading a GGUF header and opening the WebGPU device.

use wasm_bindgen::prelude::*;
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::{DeviceOptions, Gpu};

/// A one-line summary of a GGUF header: architecture, tensor count and metadata keys.
/// `bytes` may be just the first part of the file; a short prefix gives an error saying
/// how many bytes the header needs.
#[wasm_bindgen(js_name = ggufSummary)]
pub fn gguf_summary(bytes: &[u8]) -> Result<String, JsError> {
    let file = GgufFile::parse_header(bytes, None)?;
    Ok(format!(
        "{} (GGUF v{}): {} tensors, {} metadata keys",
        file.architecture().unwrap_or("unknown architecture"),
        file.version,
        file.tensors.len(),
        file.metadata.len()
    ))
}

/// Opens the WebGPU device and describes the adapter and the kernel variant it gets.
#[wasm_bindgen(js_name = openDevice)]
pub async fn open_device() -> Result<String, JsError> {
    let gpu = Gpu::new(&DeviceOptions::default()).await?;
    Ok(format!("{} — {}; shader-f16: {}, max binding: {} bytes", gpu.adapter_name(), gpu.choice_reason, gpu.caps.shader_f16, gpu.caps.max_storage_binding))
}
