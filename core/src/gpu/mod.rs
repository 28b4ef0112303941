//! The device layer: adapter choice, capabilities, kernel variants, pipelines, buffers
//! and readback.

mod buffers;
mod device;
mod lost;
mod matrix;
mod pipelines;
mod plan;
mod profile;
mod readback;
mod reflect;
mod validate;
mod variants;

pub use buffers::*;
pub use device::*;
pub use lost::LostSignal;
pub use matrix::*;
pub use pipelines::*;
pub use plan::*;
pub use profile::*;
pub use reflect::*;
pub use validate::validate;
pub use variants::*;

/// Why the GPU could not do what was asked. Every variant says what and, where it can,
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found (on Linux without a GPU, install Mesa's lavapipe: scripts/setup.sh)"
    )]
    NoAdapter,
    #[error("no adapter matches {0:?}; `wisp info` lists them")]
    AdapterNotFound(String),
    #[error("could not open the device on {adapter}: {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error("the adapter {adapter} has no {feature}, which the forced variant {variant} needs")]
    MissingFeature {
        adapter: String,
        feature: &'static str,
        variant: String,
    },
    /// A setting's value (a kernel variant, tuning override, KV type…) that Wisp does
    /// not accept. `name` is what the caller called it (`WISP_TUNE` natively, `tune` on
    /// the web page), so the message points at what to change.
    #[error("{name}={value} is not valid: expected {expected}")]
    InvalidSetting {
        name: String,
        value: String,
        expected: String,
    },
    #[error("shader {kernel} failed to compile: {message}")]
    Shader { kernel: String, message: String },
    #[error("GPU out of memory allocating {what} ({bytes} bytes)")]
    OutOfMemory { what: String, bytes: u64 },
    #[error("{what} needs a buffer of {bytes} bytes, over this adapter's limit of {limit} bytes")]
    BufferTooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    #[error("GPU validation error in {what}: {message}")]
    Validation { what: String, message: String },
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
}
