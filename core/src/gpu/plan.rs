//! Recorded dispatch lists. A forward step's dispatches (pipelines, bind groups,
//! parameter blocks, grid sizes) are built once; each step re-encodes the same list into
//! one compute pass. Only the small per-step uniform changes between steps.

use std::sync::Arc;

use super::{ArenaSlot, BindingKind, Gpu, GpuError, ParamArena, Pipeline};

/// The values every kernel of a step reads (mirrors `Step` in `common/step.wgsl`):
/// counts, and where each section of the step metadata starts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub n_tokens: u32,
    pub n_entries: u32,
    pub n_rows: u32,
    pub n_work: u32,
    pub token_info: u32,
    pub entries: u32,
    pub tables: u32,
    pub rows: u32,
    pub work: u32,
    pub reduce: u32,
    pub n_reduce: u32,
    pub _pad: u32,
}

/// The sizes a step's grids scale with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepShape {
    /// Tokens in the step.
    pub tokens: u32,
    /// Rows of logits the step computes.
    pub rows: u32,
    /// Attention work items (query tiles and key splits).
    pub work: u32,
    /// Split-K results to merge.
    pub reduce: u32,
}

impl StepShape {
    /// A step of `tokens` tokens with one row of logits.
    pub fn tokens(tokens: u32) -> StepShape {
        StepShape {
            tokens,
            rows: 1,
            work: tokens,
            reduce: 0,
        }
    }
}

/// What one axis of a grid scales with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Tokens,
    Rows,
    Work,
    Reduce,
}

/// The workgroup grid of a dispatch: fixed, except that one axis may scale with the
/// step's tokens or logits rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub base: [u32; 3],
    /// (axis, what it counts, how many of them per workgroup)
    pub scale: Option<(usize, Count, u32)>,
    /// The count is multiplied by this first (e.g. a token's expert slots).
    pub times: u32,
}

impl Grid {
    pub fn fixed(x: u32, y: u32, z: u32) -> Grid {
        Grid {
            base: [x, y, z],
            scale: None,
            times: 1,
        }
    }

    /// Fixed in x and y, axis `axis` scaled by `count` (`per` of them per workgroup).
    pub fn scaled(base: [u32; 3], axis: usize, count: Count, per: u32) -> Grid {
        Grid {
            base,
            scale: Some((axis, count, per)),
            times: 1,
        }
    }

    /// The scaled axis counts `times` workgroups per counted item instead of one.
    pub fn times(self, times: u32) -> Grid {
        Grid { times, ..self }
    }

    /// `n` workgroups folded into x and y so neither exceeds `max_per_dim`, with z
    /// scaled by `z` if given.
    pub fn rows(n: u32, max_per_dim: u32, z: Option<(Count, u32)>) -> Grid {
        let n = n.max(1);
        let x = n.min(max_per_dim);
        let y = n.div_ceil(x);
        Grid {
            base: [x, y, 1],
            scale: z.map(|(c, per)| (2, c, per)),
            times: 1,
        }
    }

    /// Resolves the grid for a step of this shape.
    pub fn size(&self, shape: StepShape) -> [u32; 3] {
        let mut g = self.base;
        if let Some((axis, count, per)) = self.scale {
            let n = match count {
                Count::Tokens => shape.tokens,
                Count::Rows => shape.rows,
                Count::Work => shape.work,
                Count::Reduce => shape.reduce,
            };
            // An empty dispatch is allowed and does nothing (e.g. no split-K this step).
            g[axis] = (n * self.times).div_ceil(per.max(1));
        }
        g
    }
}

/// Whether a dispatch binds the step uniform (`common/step.wgsl`'s `Step`), right after
/// its parameter block: kernels whose grid or work depends on the step's counts do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepUniform {
    Bound,
    NotBound,
}

/// One recorded dispatch.
pub struct Dispatch {
    pub pipeline: Arc<Pipeline>,
    pub bind_group: wgpu::BindGroup,
    pub grid: Grid,
}

struct Pending {
    pipeline: Arc<Pipeline>,
    params: Option<ArenaSlot>,
    step: StepUniform,
    buffers: Vec<wgpu::Buffer>,
    grid: Grid,
}

/// Collects dispatches, then creates their parameter arena and bind groups at once.
pub struct PlanBuilder {
    arena: ParamArena,
    pending: Vec<Pending>,
    step: wgpu::Buffer,
}

/// A recorded list of dispatches and the buffers their parameters live in.
pub struct Plan {
    pub dispatches: Vec<Dispatch>,
    /// Kept alive for the bind groups that point into it.
    _arena: wgpu::Buffer,
}

impl PlanBuilder {
    /// A builder whose dispatches read the per-step values from `step`.
    pub fn new(gpu: &Gpu, step: wgpu::Buffer) -> Self {
        PlanBuilder {
            arena: ParamArena::new(gpu.caps.min_uniform_offset_alignment),
            pending: Vec::new(),
            step,
        }
    }

    /// Adds a dispatch. Bindings are, in order: the parameter block (if any), the step
    /// uniform (if `step` says so), then `buffers`, matching the kernel's WGSL.
    pub fn add(
        &mut self,
        pipeline: Arc<Pipeline>,
        params: Option<&[u8]>,
        step: StepUniform,
        buffers: &[&wgpu::Buffer],
        grid: Grid,
    ) {
        let params = params.map(|p| self.arena.push(p));
        self.pending.push(Pending {
            pipeline,
            params,
            step,
            buffers: buffers.iter().map(|b| (*b).clone()).collect(),
            grid,
        });
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub async fn finish(self, gpu: &Gpu, what: &str) -> Result<Plan, GpuError> {
        let arena = self.arena.finish(gpu, what).await?;
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut dispatches = Vec::with_capacity(self.pending.len());
        for p in self.pending {
            let mut resources: Vec<wgpu::BindingResource<'_>> = Vec::new();
            if let Some(slot) = p.params {
                resources.push(wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &arena,
                    offset: slot.offset,
                    size: wgpu::BufferSize::new(slot.size),
                }));
            }
            if p.step == StepUniform::Bound {
                resources.push(self.step.as_entire_binding());
            }
            for b in &p.buffers {
                // Storage buffers are bound whole; a uniform binding takes the prefix
                // its WGSL type declares (matvec's fixed-size x, smaller than the
                // activation buffer it reads and than a uniform binding may be).
                let declared = p.pipeline.interface.bindings.get(resources.len());
                let resource = match declared {
                    Some(d) if d.kind == BindingKind::Uniform && d.min_size < b.size() => {
                        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: b,
                            offset: 0,
                            size: wgpu::BufferSize::new(d.min_size),
                        })
                    }
                    _ => b.as_entire_binding(),
                };
                resources.push(resource);
            }
            let entries: Vec<wgpu::BindGroupEntry<'_>> = resources
                .into_iter()
                .enumerate()
                .map(|(i, resource)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                })
                .collect();
            let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&p.pipeline.label),
                layout: &p.pipeline.layout,
                entries: &entries,
            });
            dispatches.push(Dispatch {
                pipeline: p.pipeline,
                bind_group,
                grid: p.grid,
            });
        }
        if let Some(e) = scope.pop().await {
            return Err(GpuError::Validation {
                what: what.to_string(),
                message: e.to_string(),
            });
        }
        Ok(Plan {
            dispatches,
            _arena: arena,
        })
    }
}

impl Plan {
    /// Encodes every dispatch for a step of this shape into `pass`.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>, shape: StepShape) {
        for d in &self.dispatches {
            let [x, y, z] = d.grid.size(shape);
            pass.set_pipeline(&d.pipeline.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
    }
}
