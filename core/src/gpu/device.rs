//! Adapter enumeration and choice, device creation, and the capabilities that decide
//! which kernel variants run.

use std::sync::{Arc, Mutex};

use super::{GpuError, LoopBounding, LostSignal, PipelineCache};

/// How to pick the adapter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// The best one: a discrete GPU, else an integrated one, else a virtual one, else a
    /// CPU adapter (such as lavapipe); native APIs before GL.
    #[default]
    Auto,
    /// By position in the list that `wisp info` prints.
    Index(usize),
    /// The first whose name contains this text (case-insensitive).
    Name(String),
}

impl std::str::FromStr for AdapterChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse::<usize>() {
            Ok(i) => AdapterChoice::Index(i),
            Err(_) if s.eq_ignore_ascii_case("auto") => AdapterChoice::Auto,
            Err(_) => AdapterChoice::Name(s.to_string()),
        })
    }
}

/// Options for opening the device.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    pub adapter: AdapterChoice,
    /// Pretend the storage-binding limit is this small (tests use it to force tensors
    /// to be split across buffers).
    pub max_binding_override: Option<u64>,
    /// Compile shaders with naga's loop counters (natively `WISP_LOOP_BOUNDING=1`).
    pub loop_bounding: LoopBounding,
}

/// What the device can do, as far as kernel choice is concerned.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub shader_f16: bool,
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// A CPU adapter (lavapipe, SwiftShader, WARP): lanes are SIMD slots of a CPU core,
    /// so register-blocked kernels without barriers beat shared-memory tiles.
    pub cpu_like: bool,
    pub timestamp_queries: bool,
    pub max_storage_binding: u64,
    pub max_buffer_size: u64,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroup_storage: u32,
    pub max_workgroups_per_dimension: u32,
    pub min_uniform_offset_alignment: u32,
    pub max_storage_buffers_per_stage: u32,
}

/// A short description of an adapter, for listings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub capabilities: Capabilities,
    pub features: Vec<String>,
}

/// An open device, its queue and what it can do.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub caps: Capabilities,
    /// Why this adapter was taken (printed by the CLI).
    pub choice_reason: String,
    pub pipelines: PipelineCache,
    /// Errors wgpu reported outside any error scope, kept so they surface as errors
    /// instead of panics.
    uncaptured: Arc<Mutex<Vec<String>>>,
    lost: LostSignal,
    /// Bytes of every buffer created so far (buffers are never freed while the engine
    /// lives, so this is what it holds).
    pub(crate) allocated: std::sync::atomic::AtomicU64,
}

fn backends() -> wgpu::Backends {
    // GL is left out: its compute support is too limited for these kernels.
    wgpu::Backends::VULKAN
        | wgpu::Backends::METAL
        | wgpu::Backends::DX12
        | wgpu::Backends::BROWSER_WEBGPU
}

fn new_instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

fn is_cpu_like(info: &wgpu::AdapterInfo) -> bool {
    let name = info.name.to_ascii_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || [
            "llvmpipe",
            "lavapipe",
            "swiftshader",
            "warp",
            "microsoft basic render",
        ]
        .iter()
        .any(|n| name.contains(n))
}

fn capabilities(adapter: &wgpu::Adapter, max_binding_override: Option<u64>) -> Capabilities {
    let info = adapter.get_info();
    let f = adapter.features();
    let l = adapter.limits();
    let max_binding = l.max_storage_buffer_binding_size;
    Capabilities {
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        cpu_like: is_cpu_like(&info),
        timestamp_queries: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        max_storage_binding: max_binding_override.map_or(max_binding, |o| o.min(max_binding)),
        max_buffer_size: l.max_buffer_size,
        max_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_workgroup_storage: l.max_compute_workgroup_storage_size,
        max_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        min_uniform_offset_alignment: l.min_uniform_buffer_offset_alignment,
        max_storage_buffers_per_stage: l.max_storage_buffers_per_shader_stage,
    }
}

fn summary(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let mut features: Vec<String> = adapter
        .features()
        .iter_names()
        .map(|(name, _)| name.to_string())
        .collect();
    features.sort();
    AdapterSummary {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        capabilities: capabilities(adapter, None),
        features,
    }
}

async fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    instance.enumerate_adapters(backends()).await
}

/// Every adapter wgpu can see, in the order `--adapter INDEX` refers to.
pub async fn list_adapters() -> Vec<AdapterSummary> {
    let instance = new_instance();
    enumerate(&instance)
        .await
        .iter()
        .enumerate()
        .map(|(i, a)| summary(i, a))
        .collect()
}

fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::BrowserWebGpu => 1,
        _ => 2,
    }
}

fn choose(
    adapters: Vec<wgpu::Adapter>,
    choice: &AdapterChoice,
) -> Result<(wgpu::Adapter, String), GpuError> {
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter);
    }
    match choice {
        AdapterChoice::Index(i) => {
            let n = adapters.len();
            let a = adapters
                .into_iter()
                .nth(*i)
                .ok_or_else(|| GpuError::AdapterNotFound(format!("index {i} (there are {n})")))?;
            Ok((a, format!("adapter {i}, as asked")))
        }
        AdapterChoice::Name(name) => {
            let needle = name.to_ascii_lowercase();
            let a = adapters
                .into_iter()
                .find(|a| a.get_info().name.to_ascii_lowercase().contains(&needle))
                .ok_or_else(|| GpuError::AdapterNotFound(name.clone()))?;
            Ok((a, format!("its name matches {name:?}")))
        }
        AdapterChoice::Auto => {
            let n = adapters.len();
            let best = adapters
                .into_iter()
                .min_by_key(|a| {
                    let i = a.get_info();
                    (type_rank(i.device_type), backend_rank(i.backend))
                })
                .ok_or(GpuError::NoAdapter)?;
            let t = best.get_info().device_type;
            let why = match t {
                wgpu::DeviceType::DiscreteGpu => "a discrete GPU is preferred",
                wgpu::DeviceType::IntegratedGpu => "no discrete GPU; an integrated GPU is next",
                wgpu::DeviceType::VirtualGpu => "no physical GPU; a virtual GPU is next",
                wgpu::DeviceType::Other => "no GPU of a known kind",
                wgpu::DeviceType::Cpu => "no GPU found; a CPU adapter is the last resort",
            };
            Ok((best, format!("{why} (out of {n} adapters)")))
        }
    }
}

impl Gpu {
    /// Opens the chosen adapter, asking for shader-f16 and subgroups where offered and
    /// for the adapter's own limits (not WebGPU's defaults), so large tensors fit.
    pub async fn new(options: &DeviceOptions) -> Result<Gpu, GpuError> {
        let instance = new_instance();
        let (adapter, choice_reason) = choose(enumerate(&instance).await, &options.adapter)?;
        Self::from_adapter(adapter, choice_reason, options).await
    }

    /// Opens a device on an adapter the caller already has.
    pub async fn from_adapter(
        adapter: wgpu::Adapter,
        choice_reason: String,
        options: &DeviceOptions,
    ) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let offered = adapter.features();
        let mut features = wgpu::Features::empty();
        for f in [
            wgpu::Features::SHADER_F16,
            wgpu::Features::SUBGROUP,
            wgpu::Features::TIMESTAMP_QUERY,
            wgpu::Features::PIPELINE_CACHE,
        ] {
            if offered.contains(f) {
                features |= f;
            }
        }
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wisp"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;

        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("uncaptured GPU error: {e}");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = LostSignal::default();
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "the device was destroyed",
                _ => "the driver or browser gave no reason",
            };
            lost_sink.set(format!("{why} ({message})"));
        });
        let caps = capabilities(&adapter, options.max_binding_override);
        Ok(Gpu {
            pipelines: PipelineCache::new(options.loop_bounding),
            device,
            queue,
            info,
            caps,
            choice_reason,
            uncaptured,
            lost,
            allocated: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The file name under which this adapter's driver pipeline cache may be stored, when
    /// the backend has one (Vulkan).
    pub fn pipeline_cache_key(&self) -> Option<String> {
        if !self
            .device
            .features()
            .contains(wgpu::Features::PIPELINE_CACHE)
        {
            return None;
        }
        wgpu::util::pipeline_cache_key(&self.info)
    }

    /// The device's loss, to be told of it (see [`LostSignal::wait`]).
    pub fn lost_signal(&self) -> LostSignal {
        self.lost.clone()
    }

    /// Bytes of GPU buffers created through this device so far.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The adapter's name and backend, for messages.
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// Fails if the device was lost or wgpu reported an error outside an error scope
    /// since the last check.
    pub fn check_errors(&self) -> Result<(), GpuError> {
        if let Some(reason) = self.lost.reason() {
            return Err(GpuError::DeviceLost(reason));
        }
        let errors: Vec<String> = match self.uncaptured.lock() {
            Ok(mut v) => v.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        if let Some(first) = errors.into_iter().next() {
            return Err(GpuError::Validation {
                what: "a GPU command".into(),
                message: first,
            });
        }
        Ok(())
    }
}
