//! Buffer creation with the checks and padding every buffer needs, and the arena that
//! holds every dispatch's parameters in one uniform buffer.

use super::{Gpu, GpuError};

/// Extra bytes after every storage buffer: kernels reading a 32-bit field at an
/// unaligned offset load the next word too, which must exist.
const TAIL_PAD: u64 = 4;

fn padded(len: u64) -> u64 {
    (len + TAIL_PAD).div_ceil(4) * 4
}

impl Gpu {
    /// Refuses a storage buffer larger than one binding may be: every storage buffer is
    /// bound whole, and the binding limit is the smaller of the two (no caller ever asked
    /// for the plain buffer-size limit this took a `bool` for).
    fn check_binding_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.caps.max_storage_binding;
        if bytes > limit {
            return Err(GpuError::BufferTooLarge {
                what: what.to_string(),
                bytes,
                limit,
            });
        }
        Ok(())
    }

    async fn checked<T>(
        &self,
        what: &str,
        bytes: u64,
        make: impl FnOnce() -> T,
    ) -> Result<T, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = make();
        if let Some(e) = val.pop().await {
            // Popped in reverse order of pushing.
            let _ = oom.pop().await;
            return Err(GpuError::Validation {
                what: what.to_string(),
                message: e.to_string(),
            });
        }
        if oom.pop().await.is_some() {
            return Err(GpuError::OutOfMemory {
                what: what.to_string(),
                bytes,
            });
        }
        self.allocated
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }

    /// A zero-filled storage buffer of at least `bytes` bytes that will be bound whole.
    pub async fn storage(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        self.storage_also(what, bytes, wgpu::BufferUsages::empty())
            .await
    }

    /// [`Self::storage`] that may also be bound with the `extra` usages (activations that
    /// matvec reads as a uniform prefix: `BufferUsages::UNIFORM`).
    pub async fn storage_also(
        &self,
        what: &str,
        bytes: u64,
        extra: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, GpuError> {
        let size = padded(bytes);
        self.check_binding_size(what, size)?;
        self.checked(what, size, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC
                    | extra,
                mapped_at_creation: false,
            })
        })
        .await
    }

    /// A storage buffer holding `data` (padded with zeros).
    pub async fn storage_with(&self, what: &str, data: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        let buf = self.storage(what, data.len() as u64).await?;
        self.write(&buf, 0, data);
        Ok(buf)
    }

    /// Writes bytes at `offset`, padding the tail to whole words as wgpu requires.
    pub fn write(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(buffer, offset, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.queue
                .write_buffer(buffer, offset + whole as u64, &tail);
        }
    }

    /// A small uniform buffer (e.g. the per-step values) that is rewritten between steps.
    pub async fn uniform(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let size = bytes.div_ceil(16) * 16;
        self.checked(what, size, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
        .await
    }

    /// A buffer the CPU maps to read results back.
    pub async fn staging(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let size = bytes.div_ceil(4) * 4;
        self.checked(what, size, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
        .await
    }
}

/// Where one dispatch's parameters lie in the arena.
#[derive(Clone, Copy, Debug)]
pub struct ArenaSlot {
    pub offset: u64,
    pub size: u64,
}

/// Collects every dispatch's parameter block, then uploads them as one uniform buffer,
/// each at an offset the adapter accepts for binding.
pub struct ParamArena {
    bytes: Vec<u8>,
    align: u64,
}

impl ParamArena {
    pub fn new(align: u32) -> Self {
        ParamArena {
            bytes: Vec::new(),
            align: align.max(16) as u64,
        }
    }

    /// Appends a parameter block and returns its slot.
    pub fn push(&mut self, params: &[u8]) -> ArenaSlot {
        let offset = (self.bytes.len() as u64).div_ceil(self.align) * self.align;
        self.bytes.resize(offset as usize, 0);
        self.bytes.extend_from_slice(params);
        let size = (params.len() as u64).div_ceil(16) * 16;
        self.bytes.resize((offset + size) as usize, 0);
        ArenaSlot { offset, size }
    }

    /// Uploads the arena.
    pub async fn finish(self, gpu: &Gpu, what: &str) -> Result<wgpu::Buffer, GpuError> {
        let size = (self.bytes.len() as u64).max(16);
        let buf = gpu
            .checked(what, size, || {
                gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(what),
                    size,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .await?;
        gpu.write(&buf, 0, &self.bytes);
        Ok(buf)
    }
}
