//! [`Counted`]: any [`TensorSource`] that tells a progress bar how many of the model's
//! bytes have reached the GPU, so that a loading screen moves while a large file uploads.

use std::cell::Cell;
use std::ops::Range;

use crate::gguf::{GgufFile, TensorInfo};

use super::{TensorFuture, TensorSource};

/// Bytes handed to the loader at once by [`Counted`] when the inner source has no limit:
/// small enough that a progress bar moves smoothly through a 100 MB embedding, large
/// enough that the number of uploads stays small (memory-mapped pieces are not copied).
pub const PROGRESS_PIECE: u64 = 8 << 20;

/// Wraps a source and calls `on_bytes(done, total)` after every piece the loader
/// fetched. `total` is the bytes of all tensors of the file, so the last call has
/// `done == total` (the engine then builds its pipelines).
pub struct Counted<'a, S: ?Sized> {
    inner: &'a S,
    total: u64,
    done: Cell<u64>,
    on_bytes: &'a dyn Fn(u64, u64),
}

impl<'a, S: TensorSource + ?Sized> Counted<'a, S> {
    pub fn new(inner: &'a S, file: &GgufFile, on_bytes: &'a dyn Fn(u64, u64)) -> Self {
        let total = file.tensors.iter().map(TensorInfo::n_bytes).sum();
        Counted {
            inner,
            total,
            done: Cell::new(0),
            on_bytes,
        }
    }

    /// Bytes of all tensors.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn count(&self, n: usize) {
        let done = self.done.get().saturating_add(n as u64).min(self.total);
        self.done.set(done);
        (self.on_bytes)(done, self.total);
    }
}

impl<S: TensorSource + ?Sized> TensorSource for Counted<'_, S> {
    fn max_piece(&self) -> u64 {
        self.inner.max_piece().min(PROGRESS_PIECE)
    }

    fn fetch<'a>(&'a self, info: &'a TensorInfo) -> TensorFuture<'a> {
        Box::pin(async move {
            let bytes = self.inner.fetch(info).await?;
            self.count(bytes.len());
            Ok(bytes)
        })
    }

    fn fetch_range<'a>(&'a self, info: &'a TensorInfo, range: Range<u64>) -> TensorFuture<'a> {
        Box::pin(async move {
            let bytes = self.inner.fetch_range(info, range).await?;
            self.count(bytes.len());
            Ok(bytes)
        })
    }
}
