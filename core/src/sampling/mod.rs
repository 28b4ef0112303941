//! Sampling: the CPU side of the sampler chain, penalties, seeds and stop strings.

#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    #[error("invalid sampling parameter: {0}")]
    InvalidParameter(String),
}
