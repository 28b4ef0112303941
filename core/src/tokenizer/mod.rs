//! Tokenizers built from a GGUF vocabulary or a `tokenizer.json`, and chat templates.

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer: {0}")]
    Other(String),
}
