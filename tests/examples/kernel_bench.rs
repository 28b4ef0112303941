//! Micro-benchmark: matvec effective bandwidth against a streaming read, and the
//! GFLOP/s of the product a step of BATCH tokens runs (the small-batch matvec or the
//! matrix-matrix kernel), per variant and tuning (WISP_TUNE / WISP_TIER / WISP_ACT /
//! WISP_REDUCE / WISP_LOOP_BOUNDING), for each tuning SWEEP lists. With BATCH=1 the
//! sweep is over the one-token matvec: the CPU tier's defaults came from
//! `BATCH=1 SWEEP='matvec_rows=2;matvec_rows=4;matvec_rows=8;matvec_wg=8;matvec_wg=32;matvec_x_uniform=0'`.
use std::sync::Arc;
use wisp::settings::EnvSettings;
use wisp_core::gpu::Act;
use wisp_core::gpu::{Count, DeviceOptions, Gpu, Profiler, QMatrix, StepShape, gpu_weight_type};
use wisp_core::kernels::{Kernels, MatArgs, Out, Prologue, Tuning, TuningOverrides};
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
    // Tunings to compare for the BATCH-token product: override sets separated by `;`
    // (`SWEEP='tokens_tn=1;tokens_tn=2;tokens_tn=4'`), each on top of WISP_TUNE.
    let sweep: Vec<(String, TuningOverrides)> = std::env::var("SWEEP")
        .unwrap_or_default()
        .split(';')
        .map(|set| {
            let parsed = set.parse().expect("SWEEP: override sets separated by ;");
            (set.trim().to_string(), parsed)
        })
        .collect();
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
        // One token: the matvec, against the bytes it must read (the weights and the
        // activation vector).
        let x = upload_act(&gpu, v.act, &random(2, kk, 1.0));
        let y = upload_f32(&gpu, &vec![0.0; n]);
        let best = time_product(&gpu, &prof, &k, &m, (&x, &y), (n, kk, 1), reps);
        let act_bytes = kk * if v.act == Act::F16 { 2 } else { 4 };
        let gbs = (w.len() + act_bytes) as f64 / best;
        println!(
            "{spec} matvec: {:.3} ms, {gbs:.2} GB/s of {} weight + {act_bytes} activation bytes \
             ({:.0}% of streaming)",
            best / 1e6,
            w.len(),
            100.0 * gbs / stream_gbs
        );
        // BATCH tokens: the product a step of that many runs, once per tuning of SWEEP.
        let xb = upload_act(&gpu, v.act, &random(2, kk * batch, 1.0));
        let yb = upload_f32(&gpu, &vec![0.0; n * batch]);
        for (text, set) in &sweep {
            let kt = Kernels::with_tuning(&gpu, v, tuning.with_overrides(set));
            let best = time_product(&gpu, &prof, &kt, &m, (&xb, &yb), (n, kk, batch), reps);
            let t = &kt.tuning;
            let kind = if batch == 1 {
                format!(
                    "matvec ROWS={} WG={} SPLIT={} x {}",
                    t.matvec_rows,
                    t.matvec_wg,
                    t.matvec_split,
                    if t.matvec_x_uniform {
                        "uniform"
                    } else {
                        "storage"
                    }
                )
            } else if kt.tuning.small_batch(batch as u32) {
                format!("small-batch matvec TB={}", kt.tuning.matvec_tb)
            } else if kt.tuning.matmul_tokens {
                format!("matmul_tokens TN={}", kt.tuning.tokens_tn)
            } else {
                "matmul_tiled".to_string()
            };
            let rate = if batch == 1 {
                let gbs = (w.len() + act_bytes) as f64 / best;
                format!(
                    "{gbs:.2} GB/s ({:.0}% of streaming)",
                    100.0 * gbs / stream_gbs
                )
            } else {
                format!("{:.2} GFLOP/s", 2.0 * (n * kk * batch) as f64 / best)
            };
            println!(
                "{spec} T={batch} {kind} [{}]: {:.2} ms, {rate}",
                if text.is_empty() { "as tuned" } else { text },
                best / 1e6,
            );
        }
    }
}

/// The best of `reps` runs of the product a step of `tokens` tokens runs, in ns.
fn time_product(
    gpu: &Gpu,
    prof: &Profiler,
    k: &Kernels<'_>,
    m: &QMatrix,
    (x, y): (&wgpu::Buffer, &wgpu::Buffer),
    (n, kk, tokens): (usize, usize, usize),
    reps: usize,
) -> f64 {
    let mut b = builder(gpu, step(tokens as u32));
    let args = MatArgs {
        x,
        x_stride: kk as u32,
        y,
        y_stride: n as u32,
        y_offset: 0,
        out: Out::F32,
        rows: Count::Tokens,
        prologue: Prologue::Plain,
    };
    for _ in 0..reps {
        let added = if tokens == 1 {
            pollster::block_on(k.matvec(&mut b, m, &args))
        } else if k.tuning.small_batch(tokens as u32) {
            pollster::block_on(k.matvec_batch(&mut b, m, &args))
        } else {
            pollster::block_on(k.matmul(&mut b, m, &args))
        };
        added.unwrap();
    }
    let plan = pollster::block_on(b.finish(gpu, "product")).unwrap();
    let t =
        pollster::block_on(prof.run(gpu, &[(&plan, StepShape::tokens(tokens as u32))])).unwrap();
    t.iter().map(|x| x.nanos).fold(f64::MAX, f64::min)
}
