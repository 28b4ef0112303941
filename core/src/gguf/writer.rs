//! GGUF writer (to be written).
/// Builds GGUF files in memory.
pub struct GgufWriter;
