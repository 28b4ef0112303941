//! CPU dequantization reference (filled in by the GGUF work).
