//! The adapter's practical bandwidth ceiling: a kernel that only streams a large buffer
//! in (`shaders/wgsl/bandwidth.wgsl`), timed with timestamp queries where the adapter has
//! them, else from the CPU around several passes. Decoding is memory-bound, so its GB/s
//! divided by this one says how close the engine gets to the hardware.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use wisp_core::gpu::{Gpu, PlanBuilder, Profiler, StepParams, StepShape, Variant};
use wisp_core::kernels::Kernels;

#[derive(Clone, Debug, Serialize)]
pub struct Bandwidth {
    pub gb_per_s: f64,
    /// Bytes read per pass.
    pub bytes: u64,
    /// `gpu-timestamps` (the best of the passes) or `cpu-wall` (all passes together).
    pub timing: &'static str,
}

const PASSES: usize = 8;

pub fn streaming_read(gpu: &Gpu, variant: Variant) -> Result<Bandwidth> {
    // Larger than any cache, within one binding.
    let bytes = (256u64 << 20).min(gpu.caps.max_storage_binding.saturating_sub(16)) / 16 * 16;
    let data = pollster::block_on(gpu.storage("bandwidth probe", bytes))?;
    let sink = pollster::block_on(gpu.storage("bandwidth sink", 4 * 4096))?;
    let step = pollster::block_on(gpu.uniform("bandwidth step", std::mem::size_of::<StepParams>() as u64))?;
    gpu.write(&step, 0, bytemuck::bytes_of(&StepParams { n_tokens: 1, n_rows: 1, ..Default::default() }));
    let kernels = Kernels::new(gpu, variant);
    let mut builder = PlanBuilder::new(gpu, step);
    for _ in 0..PASSES {
        pollster::block_on(kernels.bandwidth(&mut builder, &data, &sink, (bytes / 16) as u32))?;
    }
    let plan = pollster::block_on(builder.finish(gpu, "bandwidth probe"))?;
    let shape = StepShape::tokens(1);
    if let Some(profiler) = pollster::block_on(Profiler::new(gpu, PASSES as u32))? {
        // A first run pages the buffer in; then the best pass.
        pollster::block_on(profiler.run(gpu, &[(&plan, shape)]))?;
        let times = pollster::block_on(profiler.run(gpu, &[(&plan, shape)]))?;
        let best = times.iter().map(|t| t.nanos).fold(f64::MAX, f64::min);
        return Ok(Bandwidth { gb_per_s: bytes as f64 / best, bytes, timing: "gpu-timestamps" });
    }
    let run = || -> Result<f64> {
        let started = Instant::now();
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bandwidth probe") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("bandwidth probe"), timestamp_writes: None });
            plan.encode(&mut pass, shape);
        }
        gpu.queue.submit([enc.finish()]);
        pollster::block_on(gpu.read_buffer(&sink, 0, 4))?;
        Ok(started.elapsed().as_secs_f64())
    };
    run()?;
    let seconds = run()?;
    Ok(Bandwidth { gb_per_s: (PASSES as u64 * bytes) as f64 / seconds / 1e9, bytes, timing: "cpu-wall" })
}
