//! Running single kernels on the test device: uploading inputs in the variant's
//! activation type, dispatching one recorded plan, and reading results back as f32.

use half::f16;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wisp_core::gpu::{Act, Gpu, Plan, PlanBuilder, StepParams};

/// Deterministic pseudo-random values in [-scale, scale).
pub fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect()
}

/// Values as the activation type stores them.
pub fn act_bytes(act: Act, v: &[f32]) -> Vec<u8> {
    match act {
        Act::F32 => bytemuck::cast_slice(v).to_vec(),
        Act::F16 => v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect(),
    }
}

/// Rounds values to what the activation type can hold (the CPU reference uses these).
pub fn round_act(act: Act, v: &[f32]) -> Vec<f32> {
    match act {
        Act::F32 => v.to_vec(),
        Act::F16 => v.iter().map(|x| f16::from_f32(*x).to_f32()).collect(),
    }
}

pub fn from_act_bytes(act: Act, b: &[u8]) -> Vec<f32> {
    match act {
        Act::F32 => bytemuck::cast_slice::<u8, f32>(&b[..b.len() / 4 * 4]).to_vec(),
        Act::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    }
}

pub fn upload_act(gpu: &Gpu, act: Act, v: &[f32]) -> wgpu::Buffer {
    pollster::block_on(gpu.storage_with("test input", &act_bytes(act, v))).expect("upload")
}

pub fn upload_f32(gpu: &Gpu, v: &[f32]) -> wgpu::Buffer {
    pollster::block_on(gpu.storage_with("test input", bytemuck::cast_slice(v))).expect("upload")
}

pub fn upload_u32(gpu: &Gpu, v: &[u32]) -> wgpu::Buffer {
    pollster::block_on(gpu.storage_with("test input", bytemuck::cast_slice(v))).expect("upload")
}

pub fn read_act(gpu: &Gpu, act: Act, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes = pollster::block_on(gpu.read_buffer(b, 0, n as u64 * act.size())).expect("read back");
    from_act_bytes(act, &bytes)
}

pub fn read_f32(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes = pollster::block_on(gpu.read_buffer(b, 0, n as u64 * 4)).expect("read back");
    bytemuck::cast_slice(&bytes).to_vec()
}

pub fn read_u32(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<u32> {
    let bytes = pollster::block_on(gpu.read_buffer(b, 0, n as u64 * 4)).expect("read back");
    bytemuck::cast_slice(&bytes).to_vec()
}

/// A step uniform holding `step`, and a builder over it.
pub fn builder(gpu: &Gpu, step: StepParams) -> PlanBuilder {
    let buf = pollster::block_on(gpu.uniform("test step", 16)).expect("step uniform");
    gpu.write(&buf, 0, bytemuck::bytes_of(&step));
    PlanBuilder::new(gpu, buf)
}

/// Runs a plan for a step of `n_tokens` and waits for it.
pub fn run(gpu: &Gpu, plan: &Plan, n_tokens: u32) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        plan.encode(&mut pass, n_tokens);
    }
    gpu.queue.submit([enc.finish()]);
    gpu.check_errors().expect("GPU errors");
}

pub fn step(n_tokens: u32, pos0: u32) -> StepParams {
    StepParams { n_tokens, pos0, n_kv: pos0 + n_tokens, _pad: 0 }
}

/// Asserts every element is within `atol + rtol * |expected|`.
pub fn assert_close(what: &str, got: &[f32], expected: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let mut worst = (0usize, 0.0f32);
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let excess = (g - e).abs() - (atol + rtol * e.abs());
        // NaN compares false: keep it as the worst so it is reported.
        if excess > worst.1 || excess.is_nan() {
            worst = (i, excess);
        }
    }
    if worst.1 > 0.0 || got.iter().any(|g| g.is_nan()) {
        let i = worst.0;
        panic!("{what}: element {i} is {} but the reference is {} (tolerance {atol} + {rtol}·|ref|)", got[i], expected[i]);
    }
}
