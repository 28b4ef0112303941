//! Wisp's WGSL kernels, the preprocessor that composes their variants, and the registry
//! of variants every kernel can be built in.
//!
//! Each kernel is a real `.wgsl` file under `shaders/wgsl/`, embedded at build time.
//! A kernel's variants are the values of its axes (activation type, reduction kind,
//! weight format, workgroup size, ...) declared in [`kernels`]; [`compose`] refuses any
//! define that is not a declared axis value, and every declared combination is validated
//! with naga by the engine's interface test (`wisp_core::gpu::validate`, run over the
//! registry as it checks each variant against its Rust side), so no variant the engine
//! can ask for is unchecked.

mod kernels;
mod preprocess;

pub use kernels::{Axis, KERNELS, KernelSpec, check_every_variant, flash_tile_bytes};
pub use preprocess::{Composed, Sources, preprocess};

include!(concat!(env!("OUT_DIR"), "/sources.rs"));

/// A shader that could not be composed, located in its source file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ShaderError {
    pub file: String,
    pub line: u32,
    pub message: String,
}

/// The text of a shader source file, by path relative to `wgsl/`.
pub fn source(path: &str) -> Option<&'static str> {
    SOURCES.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
}

/// The registered kernel called `name`.
pub fn kernel(name: &str) -> Option<&'static KernelSpec> {
    KERNELS.iter().find(|k| k.name == name)
}

/// Composes kernel `name` with one value for each of its axes.
pub fn compose(name: &str, defines: &[(&str, &str)]) -> Result<Composed, ShaderError> {
    let spec = kernel(name).ok_or_else(|| ShaderError {
        file: name.to_string(),
        line: 0,
        message: format!("no kernel named {name:?}"),
    })?;
    spec.check(defines)?;
    preprocess(SOURCES, spec.file, defines)
}
