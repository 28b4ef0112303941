//! The driver's pipeline cache on disk: `<cache>/pipelines/<adapter key>` holds what the
//! driver compiled last time (Vulkan only; wgpu names the file after the adapter), so a
//! later run skips most shader compilation. `WISP_PIPELINE_CACHE=off` disables it (read
//! with the other variables in `settings.rs`).
//!
//! The cache is an optimisation: a missing, unreadable or stale file only costs the
//! compilation it would have saved, and a failure to write it is a warning.

use std::path::PathBuf;

use wisp_core::gpu::Gpu;

use crate::model_cache;
use crate::settings::PipelineCacheFile;

/// Where this adapter's pipeline cache lives, if it has one and caching is on.
pub fn path(gpu: &Gpu, file: PipelineCacheFile) -> Option<PathBuf> {
    if file == PipelineCacheFile::Off {
        return None;
    }
    let key = gpu.pipeline_cache_key()?;
    Some(model_cache::cache_dir().ok()?.join("pipelines").join(key))
}

/// Starts the device's pipeline cache from the file of an earlier run, if any. Call
/// before any pipeline is built.
pub fn attach(gpu: &Gpu, file: PipelineCacheFile) {
    let Some(path) = path(gpu, file) else { return };
    let data = std::fs::read(&path).ok();
    tracing::debug!(
        "pipeline cache {}: {} bytes",
        path.display(),
        data.as_ref().map_or(0, Vec::len)
    );
    gpu.pipelines
        .attach_driver_cache(&gpu.device, data.as_deref());
}

/// Writes the device's pipeline cache for the next run (atomically: a temporary file
/// renamed into place, so a concurrent reader never sees half a file).
pub fn save(gpu: &Gpu, file: PipelineCacheFile) {
    let (Some(path), Some(data)) = (path(gpu, file), gpu.pipelines.driver_data()) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(&path);
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("cache"),
            std::process::id()
        ));
        std::fs::write(&tmp, &data)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        tracing::warn!(
            "could not save the pipeline cache to {}: {e}",
            path.display()
        );
    }
}
