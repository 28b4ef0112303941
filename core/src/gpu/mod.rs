//! The device layer: adapter choice, capabilities, buffers and pipelines.

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found")]
    NoAdapter,
}
