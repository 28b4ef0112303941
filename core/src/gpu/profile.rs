//! Per-dispatch GPU time from timestamp queries: each dispatch of a plan gets its own
//! compute pass with begin/end timestamps. This changes how the work is submitted (one
//! pass per dispatch), so it is for finding where time goes, not for headline numbers.

use super::{Gpu, GpuError, Plan, StepShape};

/// GPU time of one dispatch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTime {
    /// The pipeline's key: kernel name and variant defines.
    pub kernel: String,
    pub nanos: f64,
}

pub struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    capacity: u32,
}

impl Profiler {
    /// `None` when the adapter has no timestamp queries.
    pub async fn new(gpu: &Gpu, max_dispatches: u32) -> Result<Option<Profiler>, GpuError> {
        if !gpu.caps.timestamp_queries {
            return Ok(None);
        }
        let count = 2 * max_dispatches;
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profiler"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = 8 * count as u64;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profiler resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = gpu.staging("profiler readback", bytes).await?;
        Ok(Some(Profiler {
            queries,
            resolve,
            staging,
            capacity: max_dispatches,
        }))
    }

    /// Runs `plans` (each for a step of the given token count), one timed pass per
    /// dispatch, and returns each dispatch's GPU time in order.
    pub async fn run(
        &self,
        gpu: &Gpu,
        plans: &[(&Plan, StepShape)],
    ) -> Result<Vec<KernelTime>, GpuError> {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("profile"),
            });
        let mut labels = Vec::new();
        for (plan, shape) in plans {
            for d in &plan.dispatches {
                let i = labels.len() as u32;
                if i >= self.capacity {
                    return Err(GpuError::Validation {
                        what: "profiler".into(),
                        message: format!("more than {} dispatches", self.capacity),
                    });
                }
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&d.pipeline.label),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &self.queries,
                        beginning_of_pass_write_index: Some(2 * i),
                        end_of_pass_write_index: Some(2 * i + 1),
                    }),
                });
                let [x, y, z] = d.grid.size(*shape);
                pass.set_pipeline(&d.pipeline.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(x, y, z);
                labels.push(d.pipeline.label.clone());
            }
        }
        let n = 2 * labels.len() as u32;
        enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, 8 * n as u64);
        gpu.queue.submit([enc.finish()]);
        let bytes = gpu.read_staging(&self.staging, 8 * n as u64).await?;
        let ticks: &[u64] = bytemuck::cast_slice(&bytes);
        let period = gpu.queue.get_timestamp_period() as f64;
        Ok(labels
            .into_iter()
            .enumerate()
            .map(|(i, kernel)| KernelTime {
                kernel,
                nanos: ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period,
            })
            .collect())
    }
}

/// The GPU time of one kernel (pipeline key) over a run: its dispatches added up.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelTotal {
    pub kernel: String,
    pub dispatches: u32,
    pub ms: f64,
    /// Of the run's total.
    pub percent: f64,
}

/// Per-kernel totals of a run's dispatch times, largest first.
pub fn totals_by_kernel(times: Vec<KernelTime>) -> Vec<KernelTotal> {
    let mut totals: Vec<KernelTotal> = Vec::new();
    for t in times {
        match totals.iter_mut().find(|k| k.kernel == t.kernel) {
            Some(k) => {
                k.dispatches += 1;
                k.ms += t.nanos / 1e6;
            }
            None => totals.push(KernelTotal {
                kernel: t.kernel,
                dispatches: 1,
                ms: t.nanos / 1e6,
                percent: 0.0,
            }),
        }
    }
    let sum: f64 = totals.iter().map(|k| k.ms).sum();
    for k in &mut totals {
        k.percent = if sum > 0.0 { 100.0 * k.ms / sum } else { 0.0 };
    }
    totals.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    totals
}
