//! GGUF reader (to be written).
