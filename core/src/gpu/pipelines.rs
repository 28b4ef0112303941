//! Compute pipelines, each built once per process and device, keyed by kernel name and
//! the exact defines of its variant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{GpuError, Reflection};

/// Whether shader modules get naga's hidden loop counters (a guard against infinite
/// loops in untrusted shaders). Off by default: with them drivers cannot unroll
/// fixed-count loops (see [`PipelineCache::get`]); on only to measure what they cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoopBounding {
    #[default]
    Off,
    On,
}

/// A pipeline with its bind group layout, both made from what the composed WGSL
/// declares.
pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub label: String,
    /// The kernel's bindings and workgroup size, read by naga from its WGSL.
    pub interface: Reflection,
}

impl Pipeline {
    /// The compiled workgroup size (x, y, z); grids divide by it.
    pub fn workgroup_size(&self) -> [u32; 3] {
        self.interface.workgroup_size
    }
}

/// The bind group layout entries of a kernel's group 0, as its WGSL declares them.
fn layout_entries(interface: &Reflection) -> Vec<wgpu::BindGroupLayoutEntry> {
    interface
        .bindings
        .iter()
        .map(|b| wgpu::BindGroupLayoutEntry {
            binding: b.index,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: b.kind.wgpu(),
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect()
}

/// A process-wide cache of compiled pipelines, optionally backed by the driver's own
/// pipeline cache (`wgpu::PipelineCache`, Vulkan), whose contents callers may keep on
/// disk so that later processes skip the driver's compilation.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<String, Arc<Pipeline>>>,
    driver: Mutex<Option<wgpu::PipelineCache>>,
    /// Time spent creating pipelines (shader translation and driver compilation), so
    /// benchmarks can report it apart from steady-state speed.
    compile_time: Mutex<std::time::Duration>,
    loop_bounding: LoopBounding,
}

fn key(kernel: &str, defines: &[(&str, String)]) -> String {
    let mut k = kernel.to_string();
    for (n, v) in defines {
        k.push_str(&format!(" {n}={v}"));
    }
    k
}

impl PipelineCache {
    pub fn new(loop_bounding: LoopBounding) -> Self {
        PipelineCache {
            loop_bounding,
            ..Self::default()
        }
    }

    /// Pipelines built so far.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Backs pipeline creation with a driver pipeline cache started from `data` (what
    /// [`driver_data`](Self::driver_data) returned in an earlier process, or `None`).
    /// Data the driver does not accept (another driver version, a damaged file) is
    /// dropped and the cache starts empty. Call before the first pipeline is built.
    pub fn attach_driver_cache(&self, device: &wgpu::Device, data: Option<&[u8]>) {
        // SAFETY: wgpu requires `data` to come from `PipelineCache::get_data`. Callers
        // store exactly those bytes; and wgpu checks a header (magic, version, adapter
        // key, length) before the driver sees them, falling back to an empty cache
        // (`fallback: true`) on any mismatch or damage.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("wisp pipelines"),
                data,
                fallback: true,
            })
        };
        if let Ok(mut d) = self.driver.lock() {
            *d = Some(cache);
        }
    }

    /// The driver cache's contents, to store for the next process; `None` without one.
    pub fn driver_data(&self) -> Option<Vec<u8>> {
        self.driver.lock().ok()?.as_ref()?.get_data()
    }

    /// Seconds spent creating the pipelines built so far.
    pub fn compile_seconds(&self) -> f64 {
        self.compile_time
            .lock()
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// The pipeline for `kernel` with `defines`, compiling it on first use.
    pub async fn get(
        &self,
        device: &wgpu::Device,
        kernel: &str,
        defines: &[(&str, String)],
    ) -> Result<Arc<Pipeline>, GpuError> {
        let label = key(kernel, defines);
        if let Some(p) = self.map.lock().ok().and_then(|m| m.get(&label).cloned()) {
            return Ok(p);
        }
        let started = web_time::Instant::now();
        let pairs: Vec<(&str, &str)> = defines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let composed = wisp_shaders::compose(kernel, &pairs).map_err(|e| GpuError::Shader {
            kernel: label.clone(),
            message: e.to_string(),
        })?;

        let interface = Reflection::of(&composed.code, "main").map_err(|e| GpuError::Shader {
            kernel: label.clone(),
            message: e.to_string(),
        })?;
        let entries = layout_entries(&interface);

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
        let checks = wgpu::ShaderRuntimeChecks {
            force_loop_bounding: self.loop_bounding == LoopBounding::On,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
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
        let driver = self.driver.lock().ok().and_then(|d| d.clone());
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: driver.as_ref(),
        });
        if let Some(err) = scope.pop().await {
            return Err(GpuError::Shader {
                kernel: label,
                message: err.to_string(),
            });
        }
        if let Ok(mut t) = self.compile_time.lock() {
            *t += started.elapsed();
        }
        let p = Arc::new(Pipeline {
            pipeline,
            layout,
            label: label.clone(),
            interface,
        });
        if let Ok(mut m) = self.map.lock() {
            m.insert(label, p.clone());
        }
        Ok(p)
    }
}
