//! The adapter's practical bandwidth ceiling: the `bandwidth` kernel only streams a large
//! buffer in, timed with timestamp queries where the adapter has them, else from the CPU
//! around several passes. Decoding is memory-bound, so its GB/s divided by this one says
//! how close the engine gets to the hardware (`wisp bench`, `kernel_bench`).

use web_time::Instant;

use super::Kernels;
use crate::gpu::{Gpu, GpuError, PlanBuilder, Profiler, StepParams, StepShape, Variant};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Bandwidth {
    pub gb_per_s: f64,
    /// Bytes read per pass.
    pub bytes: u64,
    /// `gpu-timestamps` (the best of the passes) or `cpu-wall` (all passes together).
    pub timing: &'static str,
}

const PASSES: usize = 8;

/// Streams up to 256 MiB (larger than any cache, within one binding) `PASSES` times.
pub async fn streaming_read(gpu: &Gpu, variant: Variant) -> Result<Bandwidth, GpuError> {
    let bytes = (256u64 << 20).min(gpu.caps.max_storage_binding.saturating_sub(16)) / 16 * 16;
    let data = gpu.storage("bandwidth probe", bytes).await?;
    let sink = gpu.storage("bandwidth sink", 4 * 4096).await?;
    let step = gpu
        .uniform("bandwidth step", std::mem::size_of::<StepParams>() as u64)
        .await?;
    gpu.write(
        &step,
        0,
        bytemuck::bytes_of(&StepParams {
            n_tokens: 1,
            n_rows: 1,
            ..Default::default()
        }),
    );
    let kernels = Kernels::new(gpu, variant);
    let mut builder = PlanBuilder::new(gpu, step);
    for _ in 0..PASSES {
        kernels
            .bandwidth(&mut builder, &data, &sink, (bytes / 16) as u32)
            .await?;
    }
    let plan = builder.finish(gpu, "bandwidth probe").await?;
    let shape = StepShape::tokens(1);
    if let Some(profiler) = Profiler::new(gpu, PASSES as u32).await? {
        // A first run pages the buffer in; then the best pass.
        profiler.run(gpu, &[(&plan, shape)]).await?;
        let times = profiler.run(gpu, &[(&plan, shape)]).await?;
        let best = times.iter().map(|t| t.nanos).fold(f64::MAX, f64::min);
        return Ok(Bandwidth {
            gb_per_s: bytes as f64 / best,
            bytes,
            timing: "gpu-timestamps",
        });
    }
    let mut seconds = 0.0;
    // The first run pages the buffer in; the second is timed.
    for _ in 0..2 {
        let started = Instant::now();
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bandwidth probe"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bandwidth probe"),
                timestamp_writes: None,
            });
            plan.encode(&mut pass, shape);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.read_buffer(&sink, 0, 4).await?;
        seconds = started.elapsed().as_secs_f64();
    }
    Ok(Bandwidth {
        gb_per_s: (PASSES as u64 * bytes) as f64 / seconds / 1e9,
        bytes,
        timing: "cpu-wall",
    })
}
