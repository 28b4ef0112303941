//! Model descriptions: architecture configs read from metadata and the weights they need.

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture {0:?}")]
    UnsupportedArchitecture(String),
}
