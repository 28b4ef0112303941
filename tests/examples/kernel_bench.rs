//! Micro-benchmark: matvec effective bandwidth against a streaming read, and the
//! matrix-matrix product's GFLOP/s over BATCH tokens, per variant and tuning
//! (WISP_TUNE / WISP_TIER / WISP_ACT / WISP_REDUCE / WISP_LOOP_BOUNDING).
use std::sync::Arc;
use wisp::settings::EnvSettings;
use wisp_core::gpu::{Count, DeviceOptions, Gpu, Profiler, QMatrix, StepShape, gpu_weight_type};
use wisp_core::kernels::{Kernels, MatArgs, Out, Tuning};
use wisp_core::quant::{GgmlType, can_quantize, quantize};
use wisp_tests::kernel_harness::*;

fn main() {
    let env = EnvSettings::from_env().unwrap();
    let options = DeviceOptions {
        loop_bounding: env.loop_bounding,
        ..Default::default()
    };
    let gpu = Arc::new(pollster::block_on(Gpu::new(&options)).unwrap());
    let v = env.variant.resolve(&gpu.caps, "").unwrap();
    let tuning = Tuning::new(v, &gpu.caps).with_overrides(&env.tuning);
    let k = Kernels::with_tuning(&gpu, v, tuning);
    println!("variant {v} tuning {:?}", k.tuning);
    let reps = 6;
    let probe = pollster::block_on(wisp_core::kernels::streaming_read(&gpu, v)).unwrap();
    println!(
        "streaming read: {:.2} GB/s ({})",
        probe.gb_per_s, probe.timing
    );
    let stream_gbs = probe.gb_per_s;
    let prof = pollster::block_on(Profiler::new(&gpu, 64))
        .unwrap()
        .expect("kernel_bench times kernels with timestamp queries");
    // Every type with a GPU kernel on a 4096 x 4096 matrix unless SHAPES names others
    // (`type:rows x cols`, comma-separated, e.g. `q4_1:49152x576`).
    let all: Vec<String> = GgmlType::ALL
        .iter()
        .filter_map(|&t| gpu_weight_type(t))
        .map(|name| format!("{name}:4096x4096"))
        .collect();
    let shapes = std::env::var("SHAPES").unwrap_or(all.join(","));
    // Tokens of the matrix-matrix product (BATCH, default 64): decode batches are 2-64.
    let batch: usize = std::env::var("BATCH").map_or(64, |b| b.parse().expect("BATCH: a number"));
    for spec in shapes.split(',') {
        let (ty, dims) = spec.split_once(':').expect("type:NxK");
        let (n, kk) = dims.split_once('x').expect("NxK");
        let (n, kk): (usize, usize) = (n.parse().unwrap(), kk.parse().unwrap());
        let ty = *GgmlType::ALL
            .iter()
            .find(|&&t| gpu_weight_type(t) == Some(ty))
            .expect("a type with a GPU kernel");
        let w = if can_quantize(ty) {
            quantize(ty, &random(1, n * kk, 1.0)).unwrap()
        } else {
            random_blocks(ty, n * kk, 1)
        };
        let m = pollster::block_on(QMatrix::upload(&gpu, "w", ty, kk as u32, &[&w])).unwrap();
        let x = upload_act(&gpu, v.act, &random(2, kk, 1.0));
        let y = upload_f32(&gpu, &vec![0.0; n]);
        for batched in [false, true] {
            let t_tokens = if batched { batch as u32 } else { 1 };
            let xb = if batched {
                upload_act(&gpu, v.act, &random(2, kk * batch, 1.0))
            } else {
                x.clone()
            };
            let yb = if batched {
                upload_f32(&gpu, &vec![0.0; n * batch])
            } else {
                y.clone()
            };
            let mut b = builder(&gpu, step(t_tokens));
            let args = MatArgs {
                x: &xb,
                x_stride: kk as u32,
                y: &yb,
                y_stride: n as u32,
                y_offset: 0,
                out: Out::F32,
                rows: Count::Tokens,
            };
            for _ in 0..reps {
                if batched {
                    pollster::block_on(k.matmul(&mut b, &m, &args)).unwrap();
                } else {
                    pollster::block_on(k.matvec(&mut b, &m, &args)).unwrap();
                }
            }
            let plan = pollster::block_on(b.finish(&gpu, "mv")).unwrap();
            let t = pollster::block_on(prof.run(&gpu, &[(&plan, StepShape::tokens(t_tokens))]))
                .unwrap();
            let best = t.iter().map(|x| x.nanos).fold(f64::MAX, f64::min);
            if batched {
                println!(
                    "{spec} matmul T={batch}: {:.2} ms, {:.2} GFLOP/s",
                    best / 1e6,
                    2.0 * (n * kk * batch) as f64 / best
                );
            } else {
                let gbs = w.len() as f64 / best;
                println!(
                    "{spec} matvec: {:.3} ms, {gbs:.2} GB/s of weights ({:.0}% of streaming)",
                    best / 1e6,
                    100.0 * gbs / stream_gbs
                );
            }
        }
    }
}
