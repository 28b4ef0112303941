//! Every kernel against its plain CPU reference, over odd shapes (sizes that are not
//! multiples of workgroup sizes or blocking factors), in every variant the adapter runs:
//! f32 and f16 activations, subgroup and workgroup reductions, CPU-like and GPU shapes.

use wisp_core::gpu::{Act, Gpu, QMatrix, Variant};
use wisp_core::kernels::{AttnParams, Kernels, MatArgs, NormParams, Out, RopeParams};
use wisp_core::quant::{GgmlType, dequantize, quantize};
use wisp_tests::cpu_ref;
use wisp_tests::gpu::{gpu, gpu_with_binding_limit, variants};
use wisp_tests::kernel_harness::*;

/// Tolerances: f32 activations are compared tightly; f16 storage rounds inputs and
/// outputs to 11 significant bits.
fn tol(act: Act) -> (f32, f32) {
    match act {
        Act::F32 => (2e-4, 2e-4),
        Act::F16 => (2e-2, 4e-3),
    }
}

fn for_each_variant(f: impl Fn(&Gpu, Variant)) {
    let gpu = gpu();
    for v in variants(&gpu) {
        f(&gpu, v);
    }
}

const WEIGHT_TYPES: [GgmlType; 5] = [GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];

/// A random weight matrix in `ty`, and its exact dequantized values.
fn weights(ty: GgmlType, n: usize, k: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let values = random(seed, n * k, 1.0);
    let bytes = quantize(ty, &values).expect("quantize");
    let exact = dequantize(ty, &bytes, n * k).expect("dequantize");
    (bytes, exact)
}

#[allow(clippy::too_many_arguments)]
fn check_product(gpu: &Gpu, v: Variant, ty: GgmlType, n: usize, k: usize, t: usize, batched: bool, out: Out) {
    let (bytes, w) = weights(ty, n, k, 7 + n as u64);
    let m = pollster::block_on(QMatrix::upload(gpu, "w", ty, k as u32, &[&bytes])).expect("upload");
    let x = round_act(v.act, &random(11 + t as u64, t * k, 1.0));
    let xb = upload_act(gpu, v.act, &x);
    // Write into the middle of wider rows to check strides and offsets.
    let (y_stride, y_offset) = (n + 5, 3usize);
    let base = random(3, t * y_stride, 1.0);
    let yb = match out {
        Out::Act => upload_act(gpu, v.act, &round_act(v.act, &base)),
        _ => upload_f32(gpu, &base),
    };
    let kernels = Kernels::new(gpu, v);
    let mut b = builder(gpu, step(t as u32, 0));
    let args = MatArgs { x: &xb, x_stride: k as u32, y: &yb, y_stride: y_stride as u32, y_offset: y_offset as u32, out };
    if batched {
        pollster::block_on(kernels.matmul(&mut b, &m, &args)).expect("matmul");
    } else {
        pollster::block_on(kernels.matvec(&mut b, &m, &args, false)).expect("matvec");
    }
    let plan = pollster::block_on(b.finish(gpu, "test")).expect("plan");
    run(gpu, &plan, t as u32);
    let got = match out {
        Out::Act => read_act(gpu, v.act, &yb, t * y_stride),
        _ => read_f32(gpu, &yb, t * y_stride),
    };
    let prod = cpu_ref::matmul(&w, n, k, &x, t);
    let mut expected = match out {
        Out::Act => round_act(v.act, &base),
        _ => base.clone(),
    };
    for ti in 0..t {
        for ni in 0..n {
            let e = &mut expected[ti * y_stride + y_offset + ni];
            *e = if out == Out::AddF32 { *e + prod[ti * n + ni] } else { prod[ti * n + ni] };
        }
    }
    let (atol, rtol) = tol(if out == Out::Act { v.act } else { Act::F32 });
    // Sums of k products: allow for accumulation order.
    let atol = atol * (k as f32).sqrt();
    let what = format!("{} {ty} n={n} k={k} t={t} {out:?} {v}", if batched { "matmul" } else { "matvec" });
    assert_close(&what, &got, &expected, atol, rtol);
}

#[test]
fn matvec_every_type_and_output() {
    for_each_variant(|gpu, v| {
        for ty in WEIGHT_TYPES {
            for out in [Out::Act, Out::F32, Out::AddF32] {
                check_product(gpu, v, ty, 37, 96, 1, false, out);
            }
            // More rows than one workgroup covers, a longer row, two tokens.
            check_product(gpu, v, ty, 301, 224, 2, false, Out::F32);
        }
    });
}

#[test]
fn matmul_every_type_and_output() {
    for_each_variant(|gpu, v| {
        for ty in WEIGHT_TYPES {
            for out in [Out::Act, Out::F32, Out::AddF32] {
                check_product(gpu, v, ty, 37, 64, 7, true, out);
            }
            check_product(gpu, v, ty, 259, 160, 13, true, Out::Act);
        }
    });
}

#[test]
fn split_matrices_give_the_same_products() {
    // A binding limit of 8 KiB forces every matrix below into several buffers.
    let gpu = gpu_with_binding_limit(8192);
    for v in variants(&gpu) {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F32] {
            check_product(&gpu, v, ty, 301, 96, 1, false, Out::F32);
            check_product(&gpu, v, ty, 301, 96, 5, true, Out::AddF32);
        }
    }
}

#[test]
fn attention_matches_reference() {
    for_each_variant(|gpu, v| {
        // (t, pos0, n_head, n_kv, d, window): odd lengths, GQA ratios 1, 3, 7, windows.
        let cases = [
            (1, 0, 2, 2, 64, 0),
            (5, 0, 9, 3, 64, 0),
            (1, 70, 9, 3, 64, 0),
            (3, 130, 7, 1, 128, 0),
            (7, 40, 4, 4, 32, 16),
            (2, 200, 3, 1, 256, 100),
        ];
        for ((t, pos0, nh, nkv, d, window), batched) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
            let n_pos = pos0 + t;
            let qkv_w = (nh + 2 * nkv) * d;
            let qkv = round_act(v.act, &random(1, t * qkv_w, 1.0));
            let kc = round_act(v.act, &random(2, n_pos * nkv * d, 1.0));
            let vc = round_act(v.act, &random(3, n_pos * nkv * d, 1.0));
            let (qb, kb, vb) = (upload_act(gpu, v.act, &qkv), upload_act(gpu, v.act, &kc), upload_act(gpu, v.act, &vc));
            let ob = upload_act(gpu, v.act, &vec![0.0; t * nh * d]);
            let p = AttnParams {
                n_head: nh as u32,
                n_kv_head: nkv as u32,
                qkv_stride: qkv_w as u32,
                kv_stride: (nkv * d) as u32,
                out_stride: (nh * d) as u32,
                window: window as u32,
                scale: 1.0 / (d as f32).sqrt(),
                head_dim: d as u32,
            };
            let mut b = builder(gpu, step(t as u32, pos0 as u32));
            pollster::block_on(Kernels::new(gpu, v).attention(&mut b, &p, batched, &qb, &kb, &vb, &ob)).expect("attention");
            let plan = pollster::block_on(b.finish(gpu, "test")).expect("plan");
            run(gpu, &plan, t as u32);
            let got = read_act(gpu, v.act, &ob, t * nh * d);
            let q: Vec<f32> = (0..t).flat_map(|ti| qkv[ti * qkv_w..ti * qkv_w + nh * d].to_vec()).collect();
            let expected = cpu_ref::attention(&q, &kc, &vc, t, pos0, nh, nkv, d, window);
            let (atol, rtol) = tol(v.act);
            let what = format!("attention t={t} pos0={pos0} heads {nh}/{nkv} d={d} window={window} batched={batched} {v}");
            assert_close(&what, &got, &expected, atol, rtol);
        }
    });
}

#[test]
fn rope_and_cache_write_match_reference() {
    for_each_variant(|gpu, v| {
        for (t, pos0, nh, nkv, d, n_rot) in [(3, 0, 9, 3, 64, 64), (1, 4000, 4, 1, 128, 128), (5, 17, 2, 2, 32, 16)] {
            let qkv_w = (nh + 2 * nkv) * d;
            let qkv = round_act(v.act, &random(4, t * qkv_w, 1.0));
            let n_ctx = pos0 + t + 3;
            let qb = upload_act(gpu, v.act, &qkv);
            let kb = upload_act(gpu, v.act, &vec![0.0; n_ctx * nkv * d]);
            let vb = upload_act(gpu, v.act, &vec![0.0; n_ctx * nkv * d]);
            let inv_freq: Vec<f32> = (0..n_rot / 2).map(|i| (10000f64.powf(-2.0 * i as f64 / n_rot as f64)) as f32).collect();
            let fb = upload_f32(gpu, &inv_freq);
            let p = RopeParams {
                n_head: nh as u32,
                n_kv_head: nkv as u32,
                head_dim: d as u32,
                n_rot: n_rot as u32,
                qkv_stride: qkv_w as u32,
                kv_stride: (nkv * d) as u32,
                _pad: [0; 2],
            };
            let mut b = builder(gpu, step(t as u32, pos0 as u32));
            pollster::block_on(Kernels::new(gpu, v).rope_kv(&mut b, &p, &qb, &kb, &vb, &fb)).expect("rope");
            let plan = pollster::block_on(b.finish(gpu, "test")).expect("plan");
            run(gpu, &plan, t as u32);
            let got_q = read_act(gpu, v.act, &qb, t * qkv_w);
            let got_k = read_act(gpu, v.act, &kb, n_ctx * nkv * d);
            let got_v = read_act(gpu, v.act, &vb, n_ctx * nkv * d);
            let mut exp_q = qkv.clone();
            let mut exp_k = vec![0.0; n_ctx * nkv * d];
            let mut exp_v = vec![0.0; n_ctx * nkv * d];
            for ti in 0..t {
                let pos = pos0 + ti;
                let row = &mut exp_q[ti * qkv_w..(ti + 1) * qkv_w];
                for h in 0..nh + nkv {
                    cpu_ref::rope_head(&mut row[h * d..(h + 1) * d], pos as u32, &inv_freq, n_rot);
                }
                exp_k[pos * nkv * d..(pos + 1) * nkv * d].copy_from_slice(&row[nh * d..(nh + nkv) * d]);
                exp_v[pos * nkv * d..(pos + 1) * nkv * d].copy_from_slice(&row[(nh + nkv) * d..]);
                // Only queries stay rotated in place; keys in qkv are left as they were.
                row[nh * d..].copy_from_slice(&qkv[ti * qkv_w + nh * d..(ti + 1) * qkv_w]);
            }
            let (atol, rtol) = tol(v.act);
            let what = format!("rope t={t} pos0={pos0} heads {nh}/{nkv} d={d} n_rot={n_rot} {v}");
            // Angles up to 4000 rad: f32 argument rounding allows ~2e-4 absolute error.
            assert_close(&format!("{what} queries"), &got_q, &round_act(v.act, &exp_q), atol + 1e-3, rtol);
            assert_close(&format!("{what} key cache"), &got_k, &round_act(v.act, &exp_k), atol + 1e-3, rtol);
            assert_close(&format!("{what} value cache"), &got_v, &exp_v, 0.0, 0.0);
        }
    });
}

#[test]
fn embedding_lookup_every_type() {
    for_each_variant(|gpu, v| {
        for ty in WEIGHT_TYPES {
            let (rows, k) = (53, 96);
            let (bytes, table) = weights(ty, rows, k, 5);
            let m = pollster::block_on(QMatrix::upload(gpu, "embd", ty, k as u32, &[&bytes])).unwrap();
            let tokens = [7u32, 0, 52, 7, 31];
            let tb = upload_u32(gpu, &tokens);
            let xb = upload_f32(gpu, &vec![0.0; tokens.len() * k]);
            let mut b = builder(gpu, step(tokens.len() as u32, 0));
            pollster::block_on(Kernels::new(gpu, v).embed(&mut b, &m, &tb, &xb, 0.5)).unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, tokens.len() as u32);
            let got = read_f32(gpu, &xb, tokens.len() * k);
            let expected: Vec<f32> = tokens.iter().flat_map(|&t| table[t as usize * k..][..k].iter().map(|x| 0.5 * x)).collect();
            assert_close(&format!("embed {ty} {v}"), &got, &expected, 0.0, 1e-6);
        }
    });
}

#[test]
fn rmsnorm_all_rows_and_last_row() {
    for_each_variant(|gpu, v| {
        for (t, n) in [(3usize, 576usize), (1, 96), (5, 1000)] {
            let x = random(8, t * n, 3.0);
            let w = random(9, n, 1.0);
            let (xb, wb) = (upload_f32(gpu, &x), upload_f32(gpu, &w));
            for last in [false, true] {
                let yb = upload_act(gpu, v.act, &vec![0.0; t * n]);
                let mut b = builder(gpu, step(t as u32, 0));
                let p = NormParams { n: n as u32, eps: 1e-5, last: last as u32, _pad: 0 };
                pollster::block_on(Kernels::new(gpu, v).rmsnorm(&mut b, &p, &xb, &wb, &yb)).unwrap();
                let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
                run(gpu, &plan, t as u32);
                let all = cpu_ref::rmsnorm(&x, &w, 1e-5);
                let (rows, expected) = if last { (1, all[(t - 1) * n..].to_vec()) } else { (t, all) };
                let got = read_act(gpu, v.act, &yb, rows * n);
                let (atol, rtol) = tol(v.act);
                assert_close(&format!("rmsnorm t={t} n={n} last={last} {v}"), &got, &expected, atol, rtol);
            }
        }
    });
}

#[test]
fn silu_mul_matches_reference() {
    for_each_variant(|gpu, v| {
        let (t, n) = (3usize, 197usize);
        let gu = round_act(v.act, &random(12, t * 2 * n, 4.0));
        let gub = upload_act(gpu, v.act, &gu);
        let hb = upload_act(gpu, v.act, &vec![0.0; t * n]);
        let mut b = builder(gpu, step(t as u32, 0));
        pollster::block_on(Kernels::new(gpu, v).silu_mul(&mut b, &gub, &hb, n as u32)).unwrap();
        let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
        run(gpu, &plan, t as u32);
        let (atol, rtol) = tol(v.act);
        assert_close(&format!("silu_mul {v}"), &read_act(gpu, v.act, &hb, t * n), &cpu_ref::silu_mul(&gu, n), atol, rtol);
    });
}

#[test]
fn argmax_takes_the_lowest_index_among_equals() {
    for_each_variant(|gpu, v| {
        for n in [1usize, 255, 49_157] {
            let mut logits = random(13, n, 10.0);
            // Two equal maxima: the lower index wins.
            if n > 100 {
                logits[n - 3] = 50.0;
                logits[77] = 50.0;
            }
            let lb = upload_f32(gpu, &logits);
            let rb = upload_u32(gpu, &[u32::MAX, 0]);
            let mut b = builder(gpu, step(1, 0));
            pollster::block_on(Kernels::new(gpu, v).argmax(&mut b, &lb, &rb, n as u32)).unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, 1);
            let r = read_u32(gpu, &rb, 2);
            let want = cpu_ref::argmax(&logits);
            assert_eq!(r[0] as usize, want, "argmax n={n} {v}");
            assert_eq!(f32::from_bits(r[1]), logits[want], "argmax value n={n} {v}");
        }
    });
}

#[test]
fn penalties_match_the_cpu_rule() {
    use wisp_core::kernels::PenaltyParams as GpuPenalties;
    use wisp_core::sampling::{PenaltyEntry, PenaltyParams, apply_penalties};
    for_each_variant(|gpu, v| {
        let n = 1000;
        let logits = random(14, n, 5.0);
        let entries: Vec<PenaltyEntry> = [(3u32, 1u32), (500, 4), (999, 2), (0, 1), (77, 3)]
            .iter()
            .map(|&(token, count)| PenaltyEntry { token, count })
            .collect();
        let cpu = PenaltyParams { repeat_penalty: 1.3, presence_penalty: 0.4, frequency_penalty: 0.25 };
        let gp = GpuPenalties { n_entries: entries.len() as u32, repeat: 1.3, frequency: 0.25, presence: 0.4 };
        let pb = pollster::block_on(gpu.uniform("penalties", 16)).unwrap();
        gpu.write(&pb, 0, bytemuck::bytes_of(&gp));
        let eb = upload_u32(gpu, bytemuck::cast_slice(&entries));
        let lb = upload_f32(gpu, &logits);
        let mut b = builder(gpu, step(1, 0));
        pollster::block_on(Kernels::new(gpu, v).penalties(&mut b, &pb, &eb, &lb, 64)).unwrap();
        let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
        run(gpu, &plan, 1);
        let mut want = logits.clone();
        apply_penalties(&mut want, &entries, &cpu);
        assert_close(&format!("penalties {v}"), &read_f32(gpu, &lb, n), &want, 1e-6, 1e-6);
    });
}

#[test]
fn candidates_are_every_token_within_the_cutoff() {
    use wisp_core::kernels::CandidateParams;
    for_each_variant(|gpu, v| {
        for (n, cutoff, cap) in [(49_152usize, 2.5f32, 1024u32), (301, 100.0, 1024), (5000, 8.0, 16)] {
            let logits = random(15, n, 10.0);
            let pb = pollster::block_on(gpu.uniform("candidates", 16)).unwrap();
            gpu.write(&pb, 0, bytemuck::bytes_of(&CandidateParams { n: n as u32, cutoff, cap, _pad: 0 }));
            let lb = upload_f32(gpu, &logits);
            let ob = upload_u32(gpu, &vec![0; 2 + 2 * cap as usize]);
            let mut b = builder(gpu, step(1, 0));
            pollster::block_on(Kernels::new(gpu, v).candidates(&mut b, &pb, &lb, &ob)).unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, 1);
            let out = read_u32(gpu, &ob, 2 + 2 * cap as usize);
            let max = logits.iter().cloned().fold(f32::MIN, f32::max);
            let mut want: Vec<u32> = (0..n as u32).filter(|&i| logits[i as usize] >= max - cutoff).collect();
            assert_eq!(out[0] as usize, want.len(), "candidate count n={n} {v}");
            assert_eq!(f32::from_bits(out[1]), max, "max n={n} {v}");
            let kept = want.len().min(cap as usize);
            let mut got: Vec<u32> = out[2..2 + 2 * kept].chunks(2).map(|p| p[0]).collect();
            for p in out[2..2 + 2 * kept].chunks(2) {
                assert_eq!(f32::from_bits(p[1]), logits[p[0] as usize], "candidate logit {v}");
            }
            got.sort();
            if want.len() <= cap as usize {
                assert_eq!(got, want, "candidates n={n} cutoff={cutoff} {v}");
            } else {
                // Over capacity: the kept ones are a subset; the count tells the caller to fall back.
                want.retain(|t| got.contains(t));
                assert_eq!(got, want, "over-capacity candidates are genuine n={n} {v}");
            }
        }
    });
}

#[test]
fn bandwidth_probe_reads_every_word() {
    let gpu = gpu();
    let v = variants(&gpu)[0];
    // 300,000 vec4s (odd per workgroup). The fold of all words a workgroup reads is
    // written only when it equals a magic value: plant it in the last vec4 of the first
    // workgroup's range, so the write proves that vec4 was read.
    let vec4s = 300_000usize;
    let kernels = Kernels::new(&gpu, v);
    let groups = (vec4s as u32 / (256 * 16)).clamp(1, 4096);
    let per_group = (vec4s as u32).div_ceil(groups) as usize;
    let mut data = vec![0u32; 4 * vec4s];
    data[4 * (per_group - 1) + 2] = 0x9e37_79b9;
    let db = upload_u32(&gpu, &data);
    let sink = upload_u32(&gpu, &vec![0; 4096]);
    let mut b = builder(&gpu, step(1, 0));
    pollster::block_on(kernels.bandwidth(&mut b, &db, &sink, vec4s as u32)).unwrap();
    let plan = pollster::block_on(b.finish(&gpu, "test")).unwrap();
    run(&gpu, &plan, 1);
    let got = read_u32(&gpu, &sink, groups as usize);
    assert_eq!(got[0], 0x9e37_79b9, "the first workgroup's last vec4 was not read");
    assert!(got[1..].iter().all(|&x| x == 0), "other workgroups saw the planted word");
}
