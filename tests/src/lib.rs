//! Shared helpers for Wisp's integration tests.

use std::path::PathBuf;

/// Wisp's cache folder: `$WISP_CACHE_DIR`, else `$XDG_CACHE_HOME/wisp`, else
/// `$HOME/.cache/wisp` (the same rule as the `wisp` binary).
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("WISP_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return dir.join("wisp");
    }
    var("HOME").unwrap_or_default().join(".cache").join("wisp")
}

/// A test model in the cache; panics, saying how to fetch it, when it is missing.
pub fn model_path(file_name: &str) -> PathBuf {
    let path = cache_dir().join("models").join(file_name);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/test.sh (setup, then `wisp fetch`) to download it",
        path.display()
    );
    path
}

/// The reference outputs folder, `shared/reference` next to the repository.
pub fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference")
}

pub mod cpu_model;
pub mod cpu_ref;
pub mod gpu;
pub mod kernel_harness;
pub mod reference;
pub mod tiny_model;
pub mod wisp_cli;
