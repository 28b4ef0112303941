//! The device the tests run on (lavapipe in CI), opened once per test binary.

use std::sync::{Arc, OnceLock};

use wisp_core::gpu::{DeviceOptions, Gpu, Variant};

/// The default adapter, shared by every test of a binary.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        Arc::new(
            pollster::block_on(Gpu::new(&DeviceOptions::default()))
                .expect("open the default adapter"),
        )
    })
    .clone()
}

/// A separate device whose storage-binding limit is pretended to be `limit` bytes, so
/// tensors are split across buffers.
pub fn gpu_with_binding_limit(limit: u64) -> Arc<Gpu> {
    let options = DeviceOptions {
        max_binding_override: Some(limit),
        ..Default::default()
    };
    Arc::new(pollster::block_on(Gpu::new(&options)).expect("open the default adapter"))
}

/// Every kernel variant the adapter can run; the tests sweep all of them.
pub fn variants(gpu: &Gpu) -> Vec<Variant> {
    let v = Variant::all_supported(&gpu.caps);
    assert!(
        !v.is_empty(),
        "no kernel variant runs on {}",
        gpu.adapter_name()
    );
    v
}

/// A few variants in which every value of every axis (activation type, reduction, tier)
/// the adapter runs appears at least once: for end-to-end checks of large models, where
/// every combination would cost minutes each on a software adapter. (The kernels
/// themselves are checked in every combination by `tests/kernels.rs`.)
pub fn covering_variants(gpu: &Gpu) -> Vec<Variant> {
    let all = variants(gpu);
    let values = |v: &Variant| {
        [
            format!("{:?}", v.act),
            format!("{:?}", v.reduce),
            format!("{:?}", v.tier),
        ]
    };
    let mut uncovered: Vec<String> = all.iter().flat_map(values).collect();
    uncovered.sort();
    uncovered.dedup();
    let mut chosen = Vec::new();
    while !uncovered.is_empty() {
        // The variant covering the most values not yet covered (the first among equals).
        let gain = |v: &Variant| values(v).iter().filter(|x| uncovered.contains(x)).count();
        let mut best = all[0];
        for v in &all[1..] {
            if gain(v) > gain(&best) {
                best = *v;
            }
        }
        uncovered.retain(|x| !values(&best).contains(x));
        chosen.push(best);
    }
    chosen
}
