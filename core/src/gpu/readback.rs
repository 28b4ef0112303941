//! Reading GPU results back: maps a staging buffer and awaits it. Natively the device
//! is polled until the map completes; in the browser the map resolves on its own and
//! the future is woken.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{Gpu, GpuError};

#[derive(Default)]
struct MapState {
    result: Option<Result<(), String>>,
    waker: Option<Waker>,
}

struct MapFuture {
    state: Arc<Mutex<MapState>>,
}

impl Future for MapFuture {
    type Output = Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut s) = self.state.lock() else {
            return Poll::Ready(Err("map state poisoned".into()));
        };
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Gpu {
    /// Maps `staging` (already filled by a submitted copy) and returns its first `len`
    /// bytes.
    pub async fn read_staging(
        &self,
        staging: &wgpu::Buffer,
        len: u64,
    ) -> Result<Vec<u8>, GpuError> {
        let state = Arc::new(Mutex::new(MapState::default()));
        let cb_state = state.clone();
        let slice = staging.slice(..len.div_ceil(4) * 4);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            if let Ok(mut s) = cb_state.lock() {
                s.result = Some(r.map_err(|e| e.to_string()));
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        MapFuture { state }.await.map_err(GpuError::Readback)?;
        let bytes = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            view[..len as usize].to_vec()
        };
        staging.unmap();
        self.check_errors()?;
        Ok(bytes)
    }

    /// Copies `len` bytes of `src` from `offset` into a new staging buffer and reads
    /// them back. For tests and occasional reads, not for the per-token path.
    pub async fn read_buffer(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, GpuError> {
        let size = len.div_ceil(4) * 4;
        let staging = self.staging("readback", size).await?;
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.read_staging(&staging, len).await
    }
}
