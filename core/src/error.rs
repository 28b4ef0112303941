//! The error type of wisp-core: one enum whose variants wrap each module's own errors.

use crate::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error(transparent)]
    Sampling(#[from] crate::sampling::SamplingError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Hf(#[from] crate::hf::HfError),
    #[error(transparent)]
    Speculation(#[from] crate::speculative::SpeculationError),
    /// A tensor's bytes could not be read (a failed fetch in the browser).
    #[error("reading the model's bytes failed: {0}")]
    Source(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
