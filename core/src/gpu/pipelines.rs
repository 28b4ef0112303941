//! Compute pipelines, each built once per process and device, keyed by kernel name and
//! the exact defines of its variant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::GpuError;

/// The kind of one binding, in the order the WGSL declares them in group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {
    Uniform,
    Read,
    ReadWrite,
}

/// A pipeline with its bind group layout.
pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub label: String,
}

/// A process-wide cache of compiled pipelines.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<String, Arc<Pipeline>>>,
    /// Time spent creating pipelines (shader translation and driver compilation), so
    /// benchmarks can report it apart from steady-state speed.
    compile_time: Mutex<std::time::Duration>,
}

fn key(kernel: &str, defines: &[(&str, String)]) -> String {
    let mut k = kernel.to_string();
    for (n, v) in defines {
        k.push_str(&format!(" {n}={v}"));
    }
    k
}

impl PipelineCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pipelines built so far.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seconds spent creating the pipelines built so far.
    pub fn compile_seconds(&self) -> f64 {
        self.compile_time.lock().map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }

    /// The pipeline for `kernel` with `defines`, compiling it on first use.
    pub async fn get(
        &self,
        device: &wgpu::Device,
        kernel: &str,
        defines: &[(&str, String)],
        bindings: &[BindingKind],
    ) -> Result<Arc<Pipeline>, GpuError> {
        let label = key(kernel, defines);
        if let Some(p) = self.map.lock().ok().and_then(|m| m.get(&label).cloned()) {
            return Ok(p);
        }
        let started = web_time::Instant::now();
        let pairs: Vec<(&str, &str)> = defines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let composed = wisp_shaders::compose(kernel, &pairs)
            .map_err(|e| GpuError::Shader { kernel: label.clone(), message: e.to_string() })?;

        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, kind)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        BindingKind::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(composed.code.clone().into()),
        };
        // By default naga adds a hidden iteration counter to every loop (a guard against
        // infinite loops in untrusted shaders). Drivers then cannot see trip counts, so
        // they unroll nothing and keep loop-indexed private arrays (accumulators,
        // dequantized chunks) in local memory instead of registers: on an H100 the
        // tiled matmul ran about 10x slower for it. Bounds checks stay on.
        let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: std::env::var_os("WISP_LOOP_BOUNDING").is_some(), ..wgpu::ShaderRuntimeChecks::checked() };
        // SAFETY: the shaders are this crate's own kernels (shaders/wgsl), not user input,
        // and every loop in them runs to a bound set by a constant or a uniform parameter.
        let module = unsafe { device.create_shader_module_trusted(descriptor, checks) };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(err) = scope.pop().await {
            return Err(GpuError::Shader { kernel: label, message: err.to_string() });
        }
        if let Ok(mut t) = self.compile_time.lock() {
            *t += started.elapsed();
        }
        let p = Arc::new(Pipeline { pipeline, layout, label: label.clone() });
        if let Ok(mut m) = self.map.lock() {
            m.insert(label, p.clone());
        }
        Ok(p)
    }
}
