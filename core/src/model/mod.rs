//! Model descriptions: the architecture's hyperparameters read from GGUF metadata, the
//! tensors it needs with their shapes checked, and their upload to the GPU.
//!
//! To add an architecture: teach [`ModelConfig::from_gguf`] its metadata prefix and
//! options, and [`weights`] its tensor names; the forward pass in `engine::forward` is
//! one transformer block with options, not one copy per model.

mod arch;
mod config;
mod cost;
mod progress;
mod synthetic;
mod weights;

pub use arch::*;
pub use config::*;
pub use cost::ModelCost;
pub use progress::{Counted, PROGRESS_PIECE};
pub use synthetic::{SyntheticModel, synthetic_shape_names};
pub use weights::*;

use crate::gguf::GgufError;

/// Why a model could not be used. Each variant names the key or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unsupported architecture {0:?} (Wisp runs: {names})", names = architecture_names())]
    UnsupportedArchitecture(String),
    #[error("the model has no tensor {0}")]
    MissingTensor(String),
    #[error("tensor {tensor} has shape {found:?}, but the metadata implies {expected:?}")]
    ShapeMismatch {
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Gguf(#[from] GgufError),
}
