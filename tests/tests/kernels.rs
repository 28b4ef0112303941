//! Every kernel against its plain CPU reference, over odd shapes (sizes that are not
//! multiples of workgroup sizes or blocking factors), in every variant the adapter runs:
//! f32 and f16 activations, subgroup and workgroup reductions, CPU-like and GPU shapes.

use wisp_core::gpu::{Act, Count, Gpu, KvType, QMatrix, Tier, Variant, gpu_weight_type};
use wisp_core::kernels::{
    ArgmaxFrom, AttnParams, HeadNormParams, Kernels, KvBindings, MatArgs, MoeRoute, NormParams,
    Out, PlanTokens, Prologue, RopeParams, Tuning,
};
use wisp_core::model::{ExpertGating, Experts, FfnActivation, RopeStyle};
use wisp_core::quant::{GgmlType, can_quantize, dequantize, quantize};
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

/// Every type with a GPU kernel whose blocks hold at most 32 values (rows of any
/// multiple of 32), or 256 (the K-quants' super-blocks): a type given a kernel is tested
/// without being listed here.
fn gpu_types(max_block: usize) -> Vec<GgmlType> {
    GgmlType::ALL
        .into_iter()
        .filter(|&t| {
            gpu_weight_type(t).is_some()
                && t.block_elems() <= max_block
                && (max_block == 32 || t.block_elems() > 32)
        })
        .collect()
}

fn weight_types() -> Vec<GgmlType> {
    gpu_types(32)
}

fn k_types() -> Vec<GgmlType> {
    gpu_types(256)
}

/// A random weight matrix in `ty` (quantized from random values, or random blocks where
/// there is no quantizer), and its exact dequantized values (the CPU reference, itself
/// checked against the `gguf` package's fixtures).
fn weights(ty: GgmlType, n: usize, k: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
    let bytes = if can_quantize(ty) {
        quantize(ty, &random(seed, n * k, 1.0)).expect("quantize")
    } else {
        random_blocks(ty, n * k, seed)
    };
    let exact = dequantize(ty, &bytes, n * k).expect("dequantize");
    (bytes, exact)
}

/// Which dispatch of the matrix product a check runs.
#[derive(Clone, Copy, Debug)]
enum Product {
    Matvec,
    /// Matvec with `Tuning::matvec_tb` tokens per lane (small decode batches).
    MatvecBatch,
    Matmul,
}

#[allow(clippy::too_many_arguments)]
fn check_product(
    gpu: &Gpu,
    v: Variant,
    ty: GgmlType,
    n: usize,
    k: usize,
    t: usize,
    product: Product,
    out: Out,
) {
    check_product_tuned(
        gpu,
        v,
        Kernels::new(gpu, v).tuning,
        ty,
        (n, k, t),
        product,
        out,
    );
}

/// Returns the label of the pipeline the product ran (its kernel and defines).
fn check_product_tuned(
    gpu: &Gpu,
    v: Variant,
    tuning: Tuning,
    ty: GgmlType,
    shape: (usize, usize, usize),
    product: Product,
    out: Out,
) -> String {
    check_product_input(gpu, v, tuning, ty, shape, (product, Input::Plain), out)
}

/// What a product's x holds, and so what the reference multiplies.
#[derive(Clone, Copy, Debug)]
enum Input {
    /// Activations, taken as they are.
    Plain,
    /// The f32 residual stream, normalised by matvec's prologue.
    Norm,
    /// [gate | up] rows, gated by matvec's prologue.
    Gated(FfnActivation),
}

const NORM_EPS: f32 = 1e-5;

/// [`check_product_tuned`] with x made by `input`'s prologue.
fn check_product_input(
    gpu: &Gpu,
    v: Variant,
    tuning: Tuning,
    ty: GgmlType,
    (n, k, t): (usize, usize, usize),
    (product, input): (Product, Input),
    out: Out,
) -> String {
    let (bytes, w) = weights(ty, n, k, 7 + n as u64);
    let m = pollster::block_on(QMatrix::upload(gpu, "w", ty, k as u32, &[&bytes])).expect("upload");
    // x as uploaded, its stride, the gain of a norm, and what the product multiplies.
    let (xb, x_stride, gain, x) = match input {
        Input::Plain => {
            let x = round_act(v.act, &random(11 + t as u64, t * k, 1.0));
            (upload_act(gpu, v.act, &x), k, None, x)
        }
        Input::Norm => {
            let raw = random(11 + t as u64, t * k, 2.0);
            let gain: Vec<f32> = random(5, k, 0.5).iter().map(|g| 1.0 + g).collect();
            let normed = cpu_ref::rmsnorm(&raw, &gain, NORM_EPS);
            // Both made as the engine makes them (bindable as uniforms).
            let xb = upload_act(gpu, Act::F32, &raw);
            (xb, k, Some(upload_act(gpu, Act::F32, &gain)), normed)
        }
        Input::Gated(gate) => {
            let gu = round_act(v.act, &random(11 + t as u64, t * 2 * k, 2.0));
            (
                upload_act(gpu, v.act, &gu),
                2 * k,
                None,
                cpu_ref::glu(&gu, k, gate),
            )
        }
    };
    let prologue = match (input, &gain) {
        (Input::Norm, Some(weight)) => Prologue::RmsNorm {
            weight,
            eps: NORM_EPS,
        },
        (Input::Gated(gate), _) => Prologue::Glu(gate),
        _ => Prologue::Plain,
    };
    // Write into the middle of wider rows to check strides and offsets.
    let (y_stride, y_offset) = (n + 5, 3usize);
    let base = random(3, t * y_stride, 1.0);
    let yb = match out {
        Out::Act => upload_act(gpu, v.act, &round_act(v.act, &base)),
        _ => upload_f32(gpu, &base),
    };
    let kernels = Kernels::with_tuning(gpu, v, tuning);
    let mut b = builder(gpu, step(t as u32));
    let args = MatArgs {
        x: &xb,
        x_stride: x_stride as u32,
        y: &yb,
        y_stride: y_stride as u32,
        y_offset: y_offset as u32,
        out,
        rows: Count::Tokens,
        prologue,
    };
    match product {
        Product::Matmul => pollster::block_on(kernels.matmul(&mut b, &m, &args)),
        Product::MatvecBatch => pollster::block_on(kernels.matvec_batch(&mut b, &m, &args)),
        Product::Matvec => pollster::block_on(kernels.matvec(&mut b, &m, &args)),
    }
    .expect("product");
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
            *e = if out == Out::AddF32 {
                *e + prod[ti * n + ni]
            } else {
                prod[ti * n + ni]
            };
        }
    }
    let (atol, rtol) = tol(if out == Out::Act { v.act } else { Act::F32 });
    // Sums of k products: allow for accumulation order.
    let atol = atol * (k as f32).sqrt();
    let what = format!("{product:?} {input:?} {ty} n={n} k={k} t={t} {out:?} {v} {tuning:?}");
    assert_close(&what, &got, &expected, atol, rtol);
    plan.dispatches[0].pipeline.label.clone()
}

/// The output modes (store activations, store f32, add into f32) are the same code for
/// every weight type: all three run with one type, the others store f32. (Each extra
/// (kernel, type, variant) is another pipeline for the software adapter to compile.)
fn outputs_for(ty: GgmlType) -> &'static [Out] {
    if ty == GgmlType::Q4_1 {
        &[Out::Act, Out::F32, Out::AddF32]
    } else {
        &[Out::F32]
    }
}

#[test]
fn matvec_every_type_and_output() {
    // outputs_for's type, and the K-quants, are among the types with kernels.
    assert!(
        weight_types().contains(&GgmlType::Q4_1) && k_types().contains(&GgmlType::Q4_K),
        "{:?} {:?}",
        weight_types(),
        k_types()
    );
    for_each_variant(|gpu, v| {
        for ty in weight_types() {
            for &out in outputs_for(ty) {
                check_product(gpu, v, ty, 37, 96, 1, Product::Matvec, out);
            }
            // More rows than one workgroup covers, a longer row, two tokens.
            check_product(gpu, v, ty, 301, 224, 2, Product::Matvec, Out::F32);
        }
    });
}

#[test]
fn matmul_every_type_and_output() {
    for_each_variant(|gpu, v| {
        for ty in weight_types() {
            for &out in outputs_for(ty) {
                check_product(gpu, v, ty, 37, 64, 7, Product::Matmul, out);
            }
            check_product(gpu, v, ty, 259, 160, 13, Product::Matmul, Out::F32);
            // More tokens than one tile holds.
            check_product(gpu, v, ty, 67, 96, 70, Product::Matmul, Out::F32);
        }
    });
}

#[test]
fn k_quants_in_every_product() {
    // Rows of one and two super-blocks; odd row counts; one token, a few, and more than
    // a tile holds.
    for_each_variant(|gpu, v| {
        for ty in k_types() {
            check_product(gpu, v, ty, 37, 256, 1, Product::Matvec, Out::F32);
            check_product(gpu, v, ty, 67, 512, 2, Product::Matvec, Out::F32);
            check_product(gpu, v, ty, 37, 256, 7, Product::Matmul, Out::F32);
            check_product(gpu, v, ty, 67, 512, 70, Product::Matmul, Out::F32);
        }
    });
}

#[test]
fn matmul_tiled_every_tile_shape() {
    // The GPU tier's tiled product in the tile shapes a tuning may pick, rows and tokens
    // past a tile's end included.
    for_each_variant(|gpu, v| {
        if v.tier != Tier::Gpu {
            return;
        }
        for (bm, bn, tm, tn) in [
            (32, 16, 2, 1),
            (32, 32, 2, 2),
            (64, 32, 4, 2),
            (64, 64, 4, 4),
            (64, 16, 4, 1),
            (32, 64, 2, 4),
        ] {
            let base = Kernels::new(gpu, v).tuning;
            let tuning = Tuning {
                matmul_tokens: false,
                tile_bm: bm,
                tile_bn: bn,
                tile_tm: tm,
                tile_tn: tn,
                ..base
            };
            for ty in [GgmlType::F16, GgmlType::Q4_1, GgmlType::Q8_0] {
                check_product_tuned(gpu, v, tuning, ty, (139, 64, 71), Product::Matmul, Out::F32);
            }
        }
    });
}

#[test]
fn matmul_tokens_every_tokens_per_lane() {
    // The CPU tier's product with one, two and four tokens per lane: blocks whose tokens
    // fill one slot (the one-token path), part of the slots, and all of them.
    for_each_variant(|gpu, v| {
        if v.tier != Tier::CpuLike {
            return;
        }
        for tn in [1, 2, 4] {
            let base = Kernels::new(gpu, v).tuning;
            let tuning = Tuning {
                matmul_tokens: true,
                tokens_tn: tn,
                ..base
            };
            for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q6_K] {
                for t in [3, 13, 70] {
                    check_product_tuned(
                        gpu,
                        v,
                        tuning,
                        ty,
                        (41, 256, t),
                        Product::Matmul,
                        Out::F32,
                    );
                }
            }
        }
    });
}

/// Runs `check` on every variant with matvec's uniform x binding off and on (its
/// tuning, and whether it is on).
fn for_each_x_binding(check: impl Fn(&Gpu, Variant, Tuning, bool)) {
    for_each_variant(|gpu, v| {
        let base = Kernels::new(gpu, v).tuning;
        for uniform in [false, true] {
            let tuning = Tuning {
                matvec_x_uniform: uniform,
                ..base
            };
            check(gpu, v, tuning, uniform);
        }
    });
}

#[test]
fn matvec_reads_x_through_either_binding() {
    // CPU adapters read x through a uniform binding (`Tuning::matvec_x_uniform`) where
    // the activations are f32 and the plan's rows of x fit its 64 KiB; everything else
    // reads a storage binding. Both, for one token and a small batch, on every variant,
    // and the binding each product really took.
    for_each_x_binding(|gpu, v, tuning, uniform| {
        for ty in [
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::F16,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            for (product, t) in [(Product::Matvec, 1), (Product::MatvecBatch, 3)] {
                let shape = (37, 256, t);
                let label = check_product_tuned(gpu, v, tuning, ty, shape, product, Out::F32);
                let expected = uniform && v.act == Act::F32;
                assert_eq!(label.contains("XBIND=uniform"), expected, "{label}");
            }
        }
        // 2304-wide rows: one fits the binding, a small batch's 8 do not.
        let wide = (19, 2304, 2);
        let label = check_product_tuned(
            gpu,
            v,
            tuning,
            GgmlType::Q4_1,
            wide,
            Product::Matvec,
            Out::F32,
        );
        assert_eq!(
            label.contains("XBIND=uniform"),
            uniform && v.act == Act::F32,
            "{label}"
        );
        let batches_of_8 = Tuning {
            few_tokens: 8,
            ..tuning
        };
        let label = check_product_tuned(
            gpu,
            v,
            batches_of_8,
            GgmlType::Q4_1,
            wide,
            Product::MatvecBatch,
            Out::F32,
        );
        assert!(label.contains("XBIND=storage"), "{label}");
    });
}

#[test]
fn matvec_prologues_match_reference() {
    // Matvec plans make their inputs as they read them: the norm before the Q/K/V and
    // gate/up products (from the f32 residual stream, whatever the activation type), the
    // gate before the down product. Each against the CPU norm or gate and product, for
    // one token and small batches, through either binding of x, on every variant; and
    // the variant each product really took.
    for_each_x_binding(|gpu, v, tuning, uniform| {
        for (input, xin, out) in [
            (Input::Norm, "rmsnorm", Out::Act),
            (Input::Gated(FfnActivation::Silu), "glu_silu", Out::AddF32),
            (
                Input::Gated(FfnActivation::GeluTanh),
                "glu_gelu_tanh",
                Out::F32,
            ),
        ] {
            for (product, ty, t) in [
                (Product::Matvec, GgmlType::Q4_1, 2),
                (Product::MatvecBatch, GgmlType::Q6_K, 3),
            ] {
                let shape = (37, 256, t);
                let label = check_product_input(gpu, v, tuning, ty, shape, (product, input), out);
                assert!(label.contains(&format!("XIN={xin}")), "{label}");
                let f32_x = v.act == Act::F32 || matches!(input, Input::Norm);
                let expected = uniform && f32_x;
                assert_eq!(label.contains("XBIND=uniform"), expected, "{label}");
            }
        }
    });
}

#[test]
fn matrix_matrix_kernels_refuse_a_prologue() {
    // Only matvec makes its input: the matrix-matrix kernels say so instead of
    // multiplying the wrong x.
    let gpu = gpu();
    let v = variants(&gpu)[0];
    let gain = upload_f32(&gpu, &[1.0; 64]);
    let x = upload_act(&gpu, Act::F32, &[0.0; 64]);
    let (bytes, _) = weights(GgmlType::Q8_0, 4, 64, 1);
    let m = pollster::block_on(QMatrix::upload(&gpu, "w", GgmlType::Q8_0, 64, &[&bytes]))
        .expect("upload");
    let args = MatArgs {
        x: &x,
        x_stride: 64,
        y: &x,
        y_stride: 4,
        y_offset: 0,
        out: Out::F32,
        rows: Count::Tokens,
        prologue: Prologue::RmsNorm {
            weight: &gain,
            eps: NORM_EPS,
        },
    };
    let mut b = builder(&gpu, step(2));
    let err = pollster::block_on(Kernels::new(&gpu, v).matmul(&mut b, &m, &args)).unwrap_err();
    assert!(err.to_string().contains("no rmsnorm prologue"), "{err}");
}

#[test]
fn matvec_batch_every_tokens_per_lane() {
    // Small decode batches: each lane takes its dequantized chunks through TB tokens, on
    // both tiers (the GPU tier's split rows reduce every token); batches that fill the
    // last block and batches that leave it part empty.
    for_each_variant(|gpu, v| {
        for tb in [2, 4] {
            let base = Kernels::new(gpu, v).tuning;
            let tuning = Tuning {
                matvec_tb: tb,
                matvec_rows: base.matvec_rows.min(16 / tb),
                ..base
            };
            for ty in [
                GgmlType::Q4_1,
                GgmlType::Q8_0,
                GgmlType::Q6_K,
                GgmlType::F16,
            ] {
                for t in [2, 3, 5] {
                    let shape = (37, 256, t);
                    check_product_tuned(gpu, v, tuning, ty, shape, Product::MatvecBatch, Out::F32);
                }
            }
        }
        let tuning = Kernels::new(gpu, v).tuning;
        let shape = (67, 96, 3);
        check_product_tuned(
            gpu,
            v,
            tuning,
            GgmlType::Q4_1,
            shape,
            Product::MatvecBatch,
            Out::AddF32,
        );
    });
}

#[test]
fn split_matrices_give_the_same_products() {
    // A binding limit of 8 KiB forces every matrix below into several buffers.
    let gpu = gpu_with_binding_limit(8192);
    for v in variants(&gpu) {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F32] {
            check_product(&gpu, v, ty, 301, 96, 1, Product::Matvec, Out::F32);
            check_product(&gpu, v, ty, 301, 96, 5, Product::Matmul, Out::AddF32);
        }
    }
}

const KV_TYPES: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Q8_0];

/// An attention test case: sequences (cached positions, new tokens), heads, KV heads,
/// head dimension, window.
type AttnCase = (&'static [(u32, u32)], usize, usize, usize, usize);

/// Random queries and per-sequence caches for `case` on the GPU, the step's buffers,
/// and the CPU reference output.
struct AttnSetup {
    t: usize,
    qb: wgpu::Buffer,
    kb: wgpu::Buffer,
    vb: wgpu::Buffer,
    ob: wgpu::Buffer,
    mb: wgpu::Buffer,
    params: AttnParams,
    expected: Vec<f32>,
}

fn attention_setup(
    gpu: &Gpu,
    v: Variant,
    kv: KvType,
    case: AttnCase,
    step_meta: &PagedStep,
) -> AttnSetup {
    let (seqs, nh, nkv, d, window) = case;
    let t: usize = seqs.iter().map(|s| s.1 as usize).sum();
    let qkv_w = (nh + 2 * nkv) * d;
    let stride = nkv * d;
    let qkv = round_act(v.act, &random(1, t * qkv_w, 1.0));
    let caches = |seed: u64| -> Vec<Vec<f32>> {
        seqs.iter()
            .enumerate()
            .map(|(i, &(p, n))| {
                round_kv(
                    kv,
                    &random(seed + i as u64, ((p + n) as usize) * stride, 1.0),
                )
            })
            .collect()
    };
    let (k_caches, v_caches) = (caches(20), caches(40));
    let mut expected = Vec::new();
    let mut first = 0;
    for (i, &(pos0, n)) in seqs.iter().enumerate() {
        let q: Vec<f32> = (first..first + n as usize)
            .flat_map(|ti| qkv[ti * qkv_w..ti * qkv_w + nh * d].to_vec())
            .collect();
        expected.extend(cpu_ref::attention(
            &q,
            &k_caches[i],
            &v_caches[i],
            n as usize,
            pos0 as usize,
            nh,
            nkv,
            d,
            window,
        ));
        first += n as usize;
    }
    AttnSetup {
        t,
        qb: upload_act(gpu, v.act, &qkv),
        kb: upload_kv(gpu, kv, &step_meta.scatter(&k_caches, stride), stride),
        vb: upload_kv(gpu, kv, &step_meta.scatter(&v_caches, stride), stride),
        ob: upload_act(gpu, v.act, &vec![0.0; t * nh * d]),
        mb: upload_u32(gpu, &step_meta.meta),
        params: AttnParams {
            n_head: nh as u32,
            n_kv_head: nkv as u32,
            qkv_stride: qkv_w as u32,
            kv_stride: stride as u32,
            out_stride: (nh * d) as u32,
            window: window as u32,
            scale: 1.0 / (d as f32).sqrt(),
            head_dim: d as u32,
        },
        expected,
    }
}

/// Tolerance for a result computed from f16-stored inputs of either kind.
fn tol_kv(act: Act, kv: KvType) -> (f32, f32) {
    if kv == KvType::F32 {
        tol(act)
    } else {
        tol(Act::F16)
    }
}

#[test]
fn attention_matches_reference() {
    for_each_variant(|gpu, v| {
        // Odd lengths, GQA ratios 1, 3, 4, 5, 7, 12 and 16 (decode takes a workgroup per
        // 1 to 8 heads, every value of the kernel's G, leaving each token two or more),
        // head dims 16 to 256, windows on and off, and a ragged batch: a prefill chunk,
        // two decoded tokens and a fresh prompt.
        let cases: [(AttnCase, u32); 13] = [
            ((&[(0, 1)], 2, 2, 64, 0), 16),
            ((&[(0, 5)], 9, 3, 64, 0), 16),
            ((&[(70, 1)], 9, 3, 64, 0), 32),
            ((&[(130, 3)], 7, 1, 128, 0), 16),
            ((&[(40, 7)], 4, 4, 32, 16), 16),
            ((&[(200, 2)], 3, 1, 256, 100), 16),
            ((&[(37, 9), (120, 1), (3, 1), (0, 6)], 6, 2, 64, 0), 16),
            ((&[(90, 1), (5, 2)], 24, 2, 32, 0), 16),
            ((&[(150, 1)], 16, 1, 32, 40), 16),
            ((&[(60, 1)], 14, 2, 64, 0), 16),
            ((&[(33, 2)], 4, 1, 128, 20), 16),
            ((&[(45, 1)], 8, 2, 32, 0), 16),
            ((&[(70, 2)], 10, 2, 16, 30), 32),
        ];
        for kv in KV_TYPES {
            for tokens in [PlanTokens::One, PlanTokens::Many] {
                for &(case, block) in &cases {
                    let step_meta = PagedStep::new(case.0, block, 7);
                    let s = attention_setup(gpu, v, kv, case, &step_meta);
                    let bindings = KvBindings {
                        k: &s.kb,
                        v: &s.vb,
                        meta: &s.mb,
                        kv,
                        block,
                    };
                    let mut b = builder(gpu, step_meta.params);
                    pollster::block_on(
                        Kernels::new(gpu, v)
                            .attention(&mut b, &s.params, tokens, &s.qb, &bindings, &s.ob),
                    )
                    .expect("attention");
                    let plan = pollster::block_on(b.finish(gpu, "test")).expect("plan");
                    run(gpu, &plan, s.t as u32);
                    let got = read_act(gpu, v.act, &s.ob, s.expected.len());
                    let (atol, rtol) = tol_kv(v.act, kv);
                    let what = format!("attention {case:?} block={block} kv={kv:?} {tokens:?} {v}");
                    assert_close(&what, &got, &s.expected, atol, rtol);
                }
            }
        }
    });
}

#[test]
fn flash_attention_with_split_k_matches_reference() {
    use wisp_core::engine::AttnTiling;
    use wisp_core::kernels::{AttnIo, FlashTiles};
    for_each_variant(|gpu, v| {
        // Ragged batches of prefill chunks and decoded tokens; long decodes are split.
        let cases: [AttnCase; 5] = [
            (&[(0, 21)], 9, 3, 64, 0),
            (&[(300, 1), (0, 5)], 7, 7, 128, 0),
            (&[(37, 9), (120, 1), (3, 1), (0, 6)], 6, 2, 64, 0),
            (&[(500, 1), (61, 2)], 4, 1, 256, 0),
            (&[(90, 17), (200, 1)], 3, 1, 32, 24),
        ];
        for kv in KV_TYPES {
            for &case in &cases {
                for forced in [
                    None,
                    Some(FlashTiles {
                        bq: 4,
                        bk: 8,
                        lanes: 4,
                    }),
                ] {
                    let tiles =
                        forced.unwrap_or(FlashTiles::for_head_dim(case.3 as u32, &gpu.caps));
                    // Few keys per split, so the decoded tokens here are split.
                    let tiling = AttnTiling {
                        bq: tiles.bq,
                        window: case.4 as u32,
                        keys_per_split: 32,
                        max_splits: 16,
                    };
                    let step_meta = PagedStep::with_tiling(case.0, 16, 11, &tiling);
                    let s = attention_setup(gpu, v, kv, case, &step_meta);
                    let partials = upload_f32(gpu, &vec![0.0; 64 * 16 * case.1 * (case.3 + 2)]);
                    let bindings = KvBindings {
                        k: &s.kb,
                        v: &s.vb,
                        meta: &s.mb,
                        kv,
                        block: 16,
                    };
                    let io = AttnIo {
                        qkv: &s.qb,
                        out: &s.ob,
                        partials: Some(&partials),
                    };
                    let k = Kernels::new(gpu, v);
                    let mut b = builder(gpu, step_meta.params);
                    pollster::block_on(k.flash_attention(&mut b, &s.params, tiles, &io, &bindings))
                        .expect("flash");
                    pollster::block_on(k.flash_reduce(&mut b, &s.params, &partials, &s.ob, &s.mb))
                        .expect("reduce");
                    let plan = pollster::block_on(b.finish(gpu, "test")).expect("plan");
                    run_shape(gpu, &plan, step_meta.shape);
                    let got = read_act(gpu, v.act, &s.ob, s.expected.len());
                    let (atol, rtol) = tol_kv(v.act, kv);
                    let what = format!(
                        "flash {case:?} kv={kv:?} tiles {tiles:?} splits {} {v}",
                        step_meta.shape.reduce
                    );
                    assert_close(&what, &got, &s.expected, atol, rtol);
                }
            }
        }
    });
}

#[test]
fn rope_and_cache_write_match_reference() {
    for_each_variant(|gpu, v| {
        // (sequences (cached, new), heads, kv heads, head dim, rotated dims)
        let cases: [AttnCase; 4] = [
            (&[(0, 3)], 9, 3, 64, 64),
            (&[(4000, 1)], 4, 1, 128, 128),
            (&[(17, 5)], 2, 2, 32, 16),
            (&[(5, 2), (60, 1), (0, 4)], 6, 2, 64, 64),
        ];
        // Interleaved pairs without a bias (llama); half-split pairs with one (qwen2).
        let styles = [
            (RopeStyle::Interleaved, false),
            (RopeStyle::HalfSplit, true),
        ];
        for kv in KV_TYPES {
            for (&(seqs, nh, nkv, d, n_rot), &(style, with_bias)) in cases
                .iter()
                .flat_map(|c| styles.iter().map(move |s| (c, s)))
            {
                let step_meta = PagedStep::new(seqs, 16, 3);
                let t: usize = seqs.iter().map(|s| s.1 as usize).sum();
                let qkv_w = (nh + 2 * nkv) * d;
                let stride = nkv * d;
                let qkv = round_act(v.act, &random(4, t * qkv_w, 1.0));
                let pool_len = (step_meta.n_blocks * 16) as usize * stride;
                let qb = upload_act(gpu, v.act, &qkv);
                let kb = upload_kv(gpu, kv, &vec![0.0; pool_len], stride);
                let vb = upload_kv(gpu, kv, &vec![0.0; pool_len], stride);
                let mb = upload_u32(gpu, &step_meta.meta);
                let inv_freq: Vec<f32> = (0..n_rot / 2)
                    .map(|i| (10000f64.powf(-2.0 * i as f64 / n_rot as f64)) as f32)
                    .collect();
                let fb = upload_f32(gpu, &inv_freq);
                let bias = if with_bias {
                    random(5, qkv_w, 0.5)
                } else {
                    vec![0.0; qkv_w]
                };
                let bias_b = upload_f32(gpu, &bias);
                let p = RopeParams {
                    n_head: nh as u32,
                    n_kv_head: nkv as u32,
                    head_dim: d as u32,
                    n_rot: n_rot as u32,
                    qkv_stride: qkv_w as u32,
                    kv_stride: stride as u32,
                    neox: u32::from(style == RopeStyle::HalfSplit),
                    bias_start: 0,
                };
                let bindings = KvBindings {
                    k: &kb,
                    v: &vb,
                    meta: &mb,
                    kv,
                    block: 16,
                };
                let mut b = builder(gpu, step_meta.params);
                pollster::block_on(Kernels::new(gpu, v).rope_kv(
                    &mut b,
                    &p,
                    &qb,
                    &bindings,
                    &fb,
                    with_bias.then_some(&bias_b),
                ))
                .expect("rope");
                let plan = pollster::block_on(b.finish(gpu, "test")).expect("plan");
                run(gpu, &plan, t as u32);
                let got_q = read_act(gpu, v.act, &qb, t * qkv_w);
                let got_k = read_kv(gpu, kv, &kb, pool_len, stride);
                let got_v = read_kv(gpu, kv, &vb, pool_len, stride);
                let biased: Vec<f32> = qkv
                    .chunks(qkv_w)
                    .flat_map(|row| row.iter().zip(&bias).map(|(x, b)| x + b))
                    .collect();
                let mut exp_q = biased.clone();
                let mut exp_k = vec![0.0; pool_len];
                let mut exp_v = vec![0.0; pool_len];
                let mut ti = 0;
                for (s, &(pos0, n)) in seqs.iter().enumerate() {
                    for i in 0..n {
                        let pos = pos0 + i;
                        let row = &mut exp_q[ti * qkv_w..(ti + 1) * qkv_w];
                        for h in 0..nh + nkv {
                            cpu_ref::rope_head(
                                &mut row[h * d..(h + 1) * d],
                                pos,
                                &inv_freq,
                                n_rot,
                                style,
                            );
                        }
                        let slot = step_meta.slot(s, pos) as usize;
                        exp_k[slot * stride..(slot + 1) * stride]
                            .copy_from_slice(&row[nh * d..(nh + nkv) * d]);
                        exp_v[slot * stride..(slot + 1) * stride]
                            .copy_from_slice(&row[(nh + nkv) * d..]);
                        // Only queries stay rotated (and biased) in place; keys and values in
                        // qkv are left as they were.
                        row[nh * d..].copy_from_slice(&qkv[ti * qkv_w + nh * d..(ti + 1) * qkv_w]);
                        ti += 1;
                    }
                }
                let (atol, rtol) = tol_kv(v.act, kv);
                let what = format!(
                    "rope {style:?} bias={with_bias} {seqs:?} heads {nh}/{nkv} d={d} n_rot={n_rot} kv={kv:?} {v}"
                );
                // Angles up to 4000 rad: f32 argument rounding allows ~2e-4 absolute error.
                assert_close(
                    &format!("{what} queries"),
                    &got_q,
                    &round_act(v.act, &exp_q),
                    atol + 1e-3,
                    rtol,
                );
                // Q8_0 may round a value the other way when GPU and CPU differ in the last
                // bit of its scaled value: one quantization step (about amax / 127).
                let step_tol = if kv == KvType::Q8_0 { 0.012 } else { 0.0 };
                assert_close(
                    &format!("{what} key pool"),
                    &got_k,
                    &round_kv(kv, &exp_k),
                    atol + 1e-3 + step_tol,
                    rtol,
                );
                let (vatol, vrtol) = if kv != KvType::F32 || v.act == Act::F16 {
                    (1e-3 + step_tol, 1e-3)
                } else {
                    (0.0, 0.0)
                };
                assert_close(
                    &format!("{what} value pool"),
                    &got_v,
                    &round_kv(kv, &exp_v),
                    vatol,
                    vrtol,
                );
            }
        }
    });
}

#[test]
fn embedding_lookup_every_type() {
    for_each_variant(|gpu, v| {
        let shapes = weight_types()
            .into_iter()
            .map(|ty| (ty, 96))
            .chain(k_types().into_iter().map(|ty| (ty, 256)));
        for (ty, k) in shapes {
            let rows = 53;
            let (bytes, table) = weights(ty, rows, k, 5);
            let m =
                pollster::block_on(QMatrix::upload(gpu, "embd", ty, k as u32, &[&bytes])).unwrap();
            let tokens = [7u32, 0, 52, 7, 31];
            let tb = upload_u32(gpu, &tokens);
            let xb = upload_f32(gpu, &vec![0.0; tokens.len() * k]);
            let mut b = builder(gpu, step(tokens.len() as u32));
            pollster::block_on(Kernels::new(gpu, v).embed(&mut b, &m, &tb, &xb, 0.5)).unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, tokens.len() as u32);
            let got = read_f32(gpu, &xb, tokens.len() * k);
            let expected: Vec<f32> = tokens
                .iter()
                .flat_map(|&t| table[t as usize * k..][..k].iter().map(|x| 0.5 * x))
                .collect();
            assert_close(&format!("embed {ty} {v}"), &got, &expected, 0.0, 1e-6);
        }
    });
}

#[test]
fn rmsnorm_all_rows_and_listed_rows() {
    for_each_variant(|gpu, v| {
        for (t, n) in [(3usize, 576usize), (1, 96), (5, 1000)] {
            let x = random(8, t * n, 3.0);
            let w = random(9, n, 1.0);
            let (xb, wb) = (upload_f32(gpu, &x), upload_f32(gpu, &w));
            // Listed rows: the last token, then the first (the order the metadata says).
            let listed = [t as u32 - 1, 0];
            let mb = upload_u32(gpu, &listed);
            for list in [false, true] {
                let yb = upload_act(gpu, v.act, &vec![0.0; t.max(listed.len()) * n]);
                let mut params = step(t as u32);
                if list {
                    params.n_rows = listed.len() as u32;
                }
                let mut b = builder(gpu, params);
                let p = NormParams {
                    n: n as u32,
                    eps: 1e-5,
                    listed: list as u32,
                    _pad: 0,
                };
                pollster::block_on(Kernels::new(gpu, v).rmsnorm(
                    &mut b,
                    &p,
                    &xb,
                    &wb,
                    &yb,
                    &mb,
                    Out::Act,
                ))
                .unwrap();
                let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    plan.encode(
                        &mut pass,
                        wisp_core::gpu::StepShape {
                            tokens: t as u32,
                            rows: params.n_rows,
                            work: 0,
                            reduce: 0,
                        },
                    );
                }
                gpu.queue.submit([enc.finish()]);
                let all = cpu_ref::rmsnorm(&x, &w, 1e-5);
                let expected: Vec<f32> = if list {
                    listed
                        .iter()
                        .flat_map(|&r| all[r as usize * n..(r as usize + 1) * n].to_vec())
                        .collect()
                } else {
                    all
                };
                let got = read_act(gpu, v.act, &yb, expected.len());
                let (atol, rtol) = tol(v.act);
                assert_close(
                    &format!("rmsnorm t={t} n={n} listed={list} {v}"),
                    &got,
                    &expected,
                    atol,
                    rtol,
                );
            }
            // Post-norm: the normalised rows added into f32 rows (always f32, so tight).
            let base = random(10, t * n, 2.0);
            let yb = upload_f32(gpu, &base);
            let mut b = builder(gpu, step(t as u32));
            let p = NormParams {
                n: n as u32,
                eps: 1e-5,
                listed: 0,
                _pad: 0,
            };
            pollster::block_on(Kernels::new(gpu, v).rmsnorm(
                &mut b,
                &p,
                &xb,
                &wb,
                &yb,
                &mb,
                Out::AddF32,
            ))
            .unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, t as u32);
            let expected: Vec<f32> = cpu_ref::rmsnorm(&x, &w, 1e-5)
                .iter()
                .zip(&base)
                .map(|(a, b)| a + b)
                .collect();
            assert_close(
                &format!("rmsnorm_add t={t} n={n} {v}"),
                &read_f32(gpu, &yb, t * n),
                &expected,
                2e-4,
                2e-4,
            );
        }
    });
}

#[test]
fn glu_matches_reference_for_each_gate() {
    for_each_variant(|gpu, v| {
        for gate in [FfnActivation::Silu, FfnActivation::GeluTanh] {
            let (t, n) = (3usize, 197usize);
            // Wide enough that GELU's tanh saturates at both ends.
            let gu = round_act(v.act, &random(12, t * 2 * n, 8.0));
            let gub = upload_act(gpu, v.act, &gu);
            let hb = upload_act(gpu, v.act, &vec![0.0; t * n]);
            let mut b = builder(gpu, step(t as u32));
            pollster::block_on(Kernels::new(gpu, v).glu(&mut b, gate, &gub, &hb, n as u32))
                .unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, t as u32);
            let (atol, rtol) = tol(v.act);
            assert_close(
                &format!("glu {gate:?} {v}"),
                &read_act(gpu, v.act, &hb, t * n),
                &cpu_ref::glu(&gu, n, gate),
                atol,
                rtol,
            );
        }
    });
}

#[test]
fn head_norm_normalises_every_query_and_key_head() {
    for_each_variant(|gpu, v| {
        // (tokens, heads, kv heads, head dim): Gemma 3's shape and an odd small one.
        for (t, nh, nkv, d) in [(3usize, 4usize, 1usize, 256usize), (5, 3, 3, 40)] {
            let qkv_w = (nh + 2 * nkv) * d;
            let qkv = round_act(v.act, &random(21, t * qkv_w, 3.0));
            let w = random(22, 2 * d, 1.0);
            let (qb, wb) = (upload_act(gpu, v.act, &qkv), upload_f32(gpu, &w));
            let p = HeadNormParams {
                n_head: nh as u32,
                n_kv_head: nkv as u32,
                head_dim: d as u32,
                qkv_stride: qkv_w as u32,
                eps: 1e-6,
                has_bias: 0,
                _pad: [0; 2],
            };
            let mut b = builder(gpu, step(t as u32));
            pollster::block_on(Kernels::new(gpu, v).head_norm(&mut b, &p, &qb, &wb, None)).unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, t as u32);
            let mut expected = qkv.clone();
            for row in expected.chunks_mut(qkv_w) {
                for h in 0..nh + nkv {
                    let weight = if h < nh { &w[..d] } else { &w[d..] };
                    let head = &mut row[h * d..(h + 1) * d];
                    head.copy_from_slice(&cpu_ref::rmsnorm(head, weight, 1e-6));
                }
            }
            let (atol, rtol) = tol(v.act);
            let got = read_act(gpu, v.act, &qb, t * qkv_w);
            assert_close(
                &format!("head_norm t={t} heads {nh}/{nkv} d={d} {v}"),
                &got,
                &expected,
                atol,
                rtol,
            );
        }
    });
}

/// What a layer with a QKV bias and QK-norm leaves for attention, on the CPU: the bias
/// added to the whole row, the query and key heads normalised, then rotated, as Hugging
/// Face's models with both do it. Returns the qkv rows as the kernels leave them (queries
/// rotated, keys normalised but not rotated, values as they were) and the rotated keys and
/// biased values of each token.
struct BiasNormRope<'a> {
    shape: (usize, usize, usize),
    bias: &'a [f32],
    norm: &'a [f32],
    inv_freq: &'a [f32],
    act: Act,
}

impl BiasNormRope<'_> {
    fn run(&self, qkv: &[f32], positions: &[u32]) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let (nh, nkv, d) = self.shape;
        let w = (nh + 2 * nkv) * d;
        let (mut rows, mut keys, mut values) = (qkv.to_vec(), Vec::new(), Vec::new());
        for (row, &pos) in rows.chunks_mut(w).zip(positions) {
            let biased: Vec<f32> = row.iter().zip(self.bias).map(|(x, b)| x + b).collect();
            let mut heads = biased[..(nh + nkv) * d].to_vec();
            for (h, head) in heads.chunks_mut(d).enumerate() {
                let weight = if h < nh {
                    &self.norm[..d]
                } else {
                    &self.norm[d..]
                };
                let normed = round_act(self.act, &cpu_ref::rmsnorm(head, weight, 1e-6));
                head.copy_from_slice(&normed);
            }
            row[..(nh + nkv) * d].copy_from_slice(&heads);
            for head in heads.chunks_mut(d) {
                cpu_ref::rope_head(head, pos, self.inv_freq, d, RopeStyle::HalfSplit);
            }
            row[..nh * d].copy_from_slice(&heads[..nh * d]);
            keys.push(heads[nh * d..].to_vec());
            values.push(biased[(nh + nkv) * d..].to_vec());
        }
        (rows, keys, values)
    }

    /// The same on the GPU (`head_norm` with the bias, then `rope_kv` adding the values'
    /// part): qkv, the key pool and the value pool after the step.
    fn on_gpu(
        &self,
        gpu: &Gpu,
        v: Variant,
        kv: KvType,
        step: &PagedStep,
        qkv: &[f32],
    ) -> [Vec<f32>; 3] {
        let (nh, nkv, d) = self.shape;
        let (qkv_w, stride) = ((nh + 2 * nkv) * d, nkv * d);
        let pool_len = (step.n_blocks * 16) as usize * stride;
        let qb = upload_act(gpu, v.act, qkv);
        let kb = upload_kv(gpu, kv, &vec![0.0; pool_len], stride);
        let vb = upload_kv(gpu, kv, &vec![0.0; pool_len], stride);
        let (mb, fb) = (upload_u32(gpu, &step.meta), upload_f32(gpu, self.inv_freq));
        let (bb, nb) = (upload_f32(gpu, self.bias), upload_f32(gpu, self.norm));
        let norm_p = HeadNormParams {
            n_head: nh as u32,
            n_kv_head: nkv as u32,
            head_dim: d as u32,
            qkv_stride: qkv_w as u32,
            eps: 1e-6,
            has_bias: 0,
            _pad: [0; 2],
        };
        let rope_p = RopeParams {
            n_head: nh as u32,
            n_kv_head: nkv as u32,
            head_dim: d as u32,
            n_rot: d as u32,
            qkv_stride: qkv_w as u32,
            kv_stride: stride as u32,
            neox: 1,
            bias_start: ((nh + nkv) * d) as u32,
        };
        let bindings = KvBindings {
            k: &kb,
            v: &vb,
            meta: &mb,
            kv,
            block: 16,
        };
        let k = Kernels::new(gpu, v);
        let mut b = builder(gpu, step.params);
        pollster::block_on(k.head_norm(&mut b, &norm_p, &qb, &nb, Some(&bb))).unwrap();
        pollster::block_on(k.rope_kv(&mut b, &rope_p, &qb, &bindings, &fb, Some(&bb))).unwrap();
        let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
        let t = qkv.len() / qkv_w;
        run(gpu, &plan, t as u32);
        [
            read_act(gpu, v.act, &qb, t * qkv_w),
            read_kv(gpu, kv, &kb, pool_len, stride),
            read_kv(gpu, kv, &vb, pool_len, stride),
        ]
    }
}

/// A QKV bias with QK-norm: `head_norm` adds the query and key parts of the bias before
/// normalising, `rope_kv` the values' part, and RoPE rotates the normalised heads.
#[test]
fn qkv_bias_then_qk_norm_then_rope_match_reference() {
    for_each_variant(|gpu, v| {
        let (nh, nkv, d) = (4usize, 2usize, 64usize);
        let seqs: &[(u32, u32)] = &[(5, 2), (60, 1)];
        let step_meta = PagedStep::new(seqs, 16, 3);
        let (t, qkv_w, stride) = (3usize, (nh + 2 * nkv) * d, nkv * d);
        let qkv = round_act(v.act, &random(31, t * qkv_w, 1.0));
        let bias = random(32, qkv_w, 2.0);
        let norm = random(33, 2 * d, 1.0);
        let inv_freq: Vec<f32> = (0..d / 2)
            .map(|i| (10000f64.powf(-2.0 * i as f64 / d as f64)) as f32)
            .collect();
        let cpu = BiasNormRope {
            shape: (nh, nkv, d),
            bias: &bias,
            norm: &norm,
            inv_freq: &inv_freq,
            act: v.act,
        };
        let positions: Vec<u32> = seqs.iter().flat_map(|&(p, n)| p..p + n).collect();
        let (exp_rows, keys, values) = cpu.run(&qkv, &positions);
        for kv in KV_TYPES {
            let pool_len = (step_meta.n_blocks * 16) as usize * stride;
            let [got, got_k, got_v] = cpu.on_gpu(gpu, v, kv, &step_meta, &qkv);
            let (mut exp_k, mut exp_v) = (vec![0.0; pool_len], vec![0.0; pool_len]);
            let tokens = seqs
                .iter()
                .enumerate()
                .flat_map(|(s, &(p, n))| (p..p + n).map(move |pos| (s, pos)));
            for (ti, (s, pos)) in tokens.enumerate() {
                let slot = step_meta.slot(s, pos) as usize;
                exp_k[slot * stride..(slot + 1) * stride].copy_from_slice(&keys[ti]);
                exp_v[slot * stride..(slot + 1) * stride].copy_from_slice(&values[ti]);
            }
            let (atol, rtol) = tol_kv(v.act, kv);
            // Q8_0 may round a value one quantization step the other way (as in the RoPE test).
            let step_tol = if kv == KvType::Q8_0 { 0.05 } else { 0.0 };
            let what = format!("bias, QK-norm, RoPE kv={kv:?} {v}");
            let exp = round_act(v.act, &exp_rows);
            assert_close(&format!("{what}: qkv"), &got, &exp, atol + 1e-3, rtol);
            let exp_k = round_kv(kv, &exp_k);
            assert_close(
                &format!("{what}: keys"),
                &got_k,
                &exp_k,
                atol + 1e-3 + step_tol,
                rtol,
            );
            let exp_v = round_kv(kv, &exp_v);
            assert_close(
                &format!("{what}: values"),
                &got_v,
                &exp_v,
                atol + 1e-3 + step_tol,
                rtol,
            );
        }
    });
}

#[test]
fn argmax_takes_the_lowest_index_among_equals_in_every_row() {
    for_each_variant(|gpu, v| {
        for (n, rows) in [(1usize, 1usize), (255, 3), (49_157, 2)] {
            let mut logits = random(13, n * rows, 10.0);
            // Two equal maxima in the last row: the lower index wins.
            if n > 100 {
                let last = (rows - 1) * n;
                logits[last + n - 3] = 50.0;
                logits[last + 77] = 50.0;
            }
            let lb = upload_f32(gpu, &logits);
            let rb = upload_u32(gpu, &vec![u32::MAX; 2 * rows]);
            let mut b = builder(gpu, step(rows as u32));
            let k = Kernels::new(gpu, v);
            pollster::block_on(k.argmax(&mut b, ArgmaxFrom::Logits, &lb, &rb, n as u32)).unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, rows as u32);
            let r = read_u32(gpu, &rb, 2 * rows);
            for row in 0..rows {
                let lr = &logits[row * n..(row + 1) * n];
                let want = cpu_ref::argmax(lr);
                assert_eq!(r[2 * row] as usize, want, "argmax n={n} row {row} {v}");
                assert_eq!(
                    f32::from_bits(r[2 * row + 1]),
                    lr[want],
                    "argmax value n={n} row {row} {v}"
                );
            }
        }
    });
}

/// The LM head's argmax epilogue (`Out::Argmax`) and the pass that finishes its pairs,
/// against the largest row of the CPU product for each of `t` tokens. Rows `n / 3` and
/// `n - 2` are equal and far above the others for token 0, so there the lower of the two
/// must win; for the other tokens the row chosen must hold the largest value within the
/// products' tolerance, and the value read back must be its own.
fn check_argmax_epilogue(
    gpu: &Gpu,
    v: Variant,
    ty: GgmlType,
    (n, k, t): (usize, usize, usize),
    product: Product,
) {
    let x = round_act(v.act, &random(21 + t as u64, t * k, 1.0));
    let mut values = random(8 + n as u64, n * k, 1.0);
    let tie = [n / 3, n - 2];
    for r in tie {
        for i in 0..k {
            values[r * k + i] = 2.0 * x[i];
        }
    }
    let bytes = quantize(ty, &values).expect("quantize");
    let w = dequantize(ty, &bytes, n * k).expect("dequantize");
    let m =
        pollster::block_on(QMatrix::upload(gpu, "head", ty, k as u32, &[&bytes])).expect("upload");
    let kernels = Kernels::new(gpu, v);
    let slots = kernels.argmax_slots(n as u32) as usize;
    let xb = upload_act(gpu, v.act, &x);
    let pairs = upload_u32(gpu, &vec![u32::MAX; 2 * slots * t]);
    let result = upload_u32(gpu, &vec![u32::MAX; 2 * t]);
    let mut b = builder(gpu, step(t as u32));
    let args = MatArgs {
        x: &xb,
        x_stride: k as u32,
        y: &pairs,
        y_stride: slots as u32,
        y_offset: 0,
        out: Out::Argmax,
        rows: Count::Tokens,
        prologue: Prologue::Plain,
    };
    match product {
        Product::Matvec => pollster::block_on(kernels.matvec(&mut b, &m, &args)),
        Product::MatvecBatch => pollster::block_on(kernels.matvec_batch(&mut b, &m, &args)),
        Product::Matmul => unreachable!("matmul has no argmax epilogue"),
    }
    .expect("product");
    pollster::block_on(kernels.argmax(&mut b, ArgmaxFrom::Pairs, &pairs, &result, slots as u32))
        .expect("argmax");
    let plan = pollster::block_on(b.finish(gpu, "test")).expect("plan");
    run(gpu, &plan, t as u32);
    let got = read_u32(gpu, &result, 2 * t);
    let prod = cpu_ref::matmul(&w, n, k, &x, t);
    let (atol, rtol) = tol(v.act);
    let atol = atol * (k as f32).sqrt();
    for ti in 0..t {
        let what = format!("argmax epilogue {product:?} {ty} n={n} k={k} token {ti}/{t} {v}");
        let row = &prod[ti * n..(ti + 1) * n];
        let (index, value) = (got[2 * ti] as usize, f32::from_bits(got[2 * ti + 1]));
        assert!(index < n, "{what}: index {index}");
        let best = row.iter().copied().fold(f32::MIN, f32::max);
        let slack = atol + rtol * best.abs();
        assert!(
            row[index] >= best - slack,
            "{what}: row {index} holds {} < {best}",
            row[index]
        );
        assert!(
            (value - row[index]).abs() <= slack,
            "{what}: value {value} vs {}",
            row[index]
        );
        if ti == 0 {
            assert_eq!(index, tie[0], "{what}: the lower of two equal rows");
        }
    }
}

#[test]
fn matvec_argmax_epilogue_finds_the_largest_row() {
    // One token and a small batch; a row count that leaves the last workgroup part-full.
    for_each_variant(|gpu, v| {
        for ty in [GgmlType::Q8_0, GgmlType::F16, GgmlType::Q4_K] {
            check_argmax_epilogue(gpu, v, ty, (1001, 256, 1), Product::Matvec);
            check_argmax_epilogue(gpu, v, ty, (1001, 256, 3), Product::MatvecBatch);
        }
    });
}

#[test]
fn matvec_argmax_epilogue_over_a_split_matrix() {
    // 34-byte rows under a 100 kB binding limit: buffers of 2048 rows, whose slots
    // follow on from each other's.
    let gpu = gpu_with_binding_limit(100_000);
    for v in variants(&gpu) {
        let m_rows = 5000;
        check_argmax_epilogue(&gpu, v, GgmlType::Q8_0, (m_rows, 32, 2), Product::Matvec);
    }
    // Under an 8 KiB limit, 272-byte rows go 16 to a buffer: where a workgroup covers
    // more rows than that, the epilogue does not fit and the product says so.
    let gpu = gpu_with_binding_limit(8192);
    let (bytes, _) = weights(GgmlType::Q8_0, 100, 256, 3);
    let m = pollster::block_on(QMatrix::upload(
        &gpu,
        "head",
        GgmlType::Q8_0,
        256,
        &[&bytes],
    ))
    .expect("upload");
    assert_eq!(m.chunks[1].first_row, 16);
    let mut refused = 0;
    for v in variants(&gpu) {
        let kernels = Kernels::new(&gpu, v);
        let slots = kernels.argmax_slots(100);
        if kernels.argmax_fits(&m) {
            continue;
        }
        refused += 1;
        let (x, y) = (upload_f32(&gpu, &[0.0; 256]), upload_u32(&gpu, &[0; 256]));
        let args = MatArgs {
            x: &x,
            x_stride: 256,
            y: &y,
            y_stride: slots,
            y_offset: 0,
            out: Out::Argmax,
            rows: Count::Tokens,
            prologue: Prologue::Plain,
        };
        let mut b = builder(&gpu, step(1));
        let err = pollster::block_on(kernels.matvec(&mut b, &m, &args)).unwrap_err();
        assert!(
            err.to_string().contains("does not start on a multiple"),
            "{v}: {err}"
        );
    }
    // The CPU tier's workgroups cover 64 rows.
    assert!(
        refused > 0,
        "no variant covers more than 16 rows per workgroup"
    );
}

#[test]
fn penalties_match_the_cpu_rule_per_row() {
    use wisp_core::kernels::{PenaltyEntry, PenaltyParams, RowParams};
    use wisp_core::sampling::apply_penalties;
    for_each_variant(|gpu, v| {
        let (n, rows) = (1000, 2);
        let logits = random(14, n * rows, 5.0);
        let per_row: [(&[(u32, u32)], RowParams); 2] = [
            (
                &[(3, 1), (500, 4), (999, 2), (0, 1), (77, 3)],
                RowParams {
                    repeat: 1.3,
                    frequency: 0.25,
                    presence: 0.4,
                    cutoff: 0.0,
                },
            ),
            (
                &[(3, 2), (10, 1)],
                RowParams {
                    repeat: 1.1,
                    frequency: 0.5,
                    presence: 0.0,
                    cutoff: 0.0,
                },
            ),
        ];
        let mut entries = Vec::new();
        let mut row_params = Vec::new();
        let mut want = logits.clone();
        for (row, (list, pp)) in per_row.iter().enumerate() {
            let row_entries: Vec<PenaltyEntry> = list
                .iter()
                .map(|&(token, count)| PenaltyEntry {
                    row: row as u32,
                    ..PenaltyEntry::new(token, count)
                })
                .collect();
            apply_penalties(&mut want[row * n..(row + 1) * n], &row_entries, pp);
            entries.extend(row_entries);
            row_params.push(*pp);
        }
        let pb = pollster::block_on(gpu.uniform("penalties", 16)).unwrap();
        gpu.write(
            &pb,
            0,
            bytemuck::bytes_of(&PenaltyParams {
                n_entries: entries.len() as u32,
                n: n as u32,
                _pad: [0; 2],
            }),
        );
        let eb = upload_u32(gpu, bytemuck::cast_slice(&entries));
        let rb = upload_u32(gpu, bytemuck::cast_slice(&row_params));
        let lb = upload_f32(gpu, &logits);
        let mut b = builder(gpu, step(1));
        pollster::block_on(Kernels::new(gpu, v).penalties(&mut b, &pb, &eb, &rb, &lb, 64)).unwrap();
        let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
        run(gpu, &plan, 1);
        assert_close(
            &format!("penalties {v}"),
            &read_f32(gpu, &lb, n * rows),
            &want,
            1e-6,
            1e-6,
        );
    });
}

#[test]
fn candidates_are_every_token_within_each_rows_cutoff() {
    use wisp_core::kernels::{CandidateParams, RowParams};
    for_each_variant(|gpu, v| {
        for (n, cutoffs, cap) in [
            (49_152usize, &[2.5f32, 0.5][..], 1024u32),
            (301, &[100.0][..], 1024),
            (5000, &[8.0, 1.0, 0.0][..], 16),
        ] {
            let rows = cutoffs.len();
            let logits = random(15, n * rows, 10.0);
            let pb = pollster::block_on(gpu.uniform("candidates", 16)).unwrap();
            gpu.write(
                &pb,
                0,
                bytemuck::bytes_of(&CandidateParams {
                    n: n as u32,
                    cap,
                    _pad: [0; 2],
                }),
            );
            let rp: Vec<RowParams> = cutoffs
                .iter()
                .map(|&c| RowParams {
                    cutoff: c,
                    ..Default::default()
                })
                .collect();
            let rb = upload_u32(gpu, bytemuck::cast_slice(&rp));
            let lb = upload_f32(gpu, &logits);
            let words = 2 + 2 * cap as usize;
            let ob = upload_u32(gpu, &vec![0; words * rows]);
            let mut b = builder(gpu, step(rows as u32));
            pollster::block_on(Kernels::new(gpu, v).candidates(&mut b, &pb, &rb, &lb, &ob))
                .unwrap();
            let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
            run(gpu, &plan, rows as u32);
            let all = read_u32(gpu, &ob, words * rows);
            for (row, &cutoff) in cutoffs.iter().enumerate() {
                let out = &all[row * words..(row + 1) * words];
                let lr = &logits[row * n..(row + 1) * n];
                let max = lr.iter().cloned().fold(f32::MIN, f32::max);
                let mut want: Vec<u32> = (0..n as u32)
                    .filter(|&i| lr[i as usize] >= max - cutoff)
                    .collect();
                assert_eq!(
                    out[0] as usize,
                    want.len(),
                    "candidate count n={n} row {row} {v}"
                );
                assert_eq!(f32::from_bits(out[1]), max, "max n={n} row {row} {v}");
                let kept = want.len().min(cap as usize);
                let mut got: Vec<u32> = out[2..2 + 2 * kept].chunks(2).map(|p| p[0]).collect();
                for p in out[2..2 + 2 * kept].chunks(2) {
                    assert_eq!(
                        f32::from_bits(p[1]),
                        lr[p[0] as usize],
                        "candidate logit {v}"
                    );
                }
                got.sort();
                if want.len() <= cap as usize {
                    assert_eq!(got, want, "candidates n={n} cutoff={cutoff} {v}");
                } else {
                    // Over capacity: the kept ones are genuine; the count tells the caller to fall back.
                    want.retain(|t| got.contains(t));
                    assert_eq!(got, want, "over-capacity candidates are genuine n={n} {v}");
                }
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
    let mut b = builder(&gpu, step(1));
    pollster::block_on(kernels.bandwidth(&mut b, &db, &sink, vec4s as u32)).unwrap();
    let plan = pollster::block_on(b.finish(&gpu, "test")).unwrap();
    run(&gpu, &plan, 1);
    let got = read_u32(&gpu, &sink, groups as usize);
    assert_eq!(
        got[0], 0x9e37_79b9,
        "the first workgroup's last vec4 was not read"
    );
    assert!(
        got[1..].iter().all(|&x| x == 0),
        "other workgroups saw the planted word"
    );
}

/// Mixture-of-experts routing: for each gating, with and without renormalisation and a
/// scale, the chosen experts (exactly, ties to the lower index) and their weights, per
/// token, against `cpu_ref::route_experts`.
#[test]
fn moe_route_picks_the_top_experts_with_their_weights() {
    for_each_variant(|gpu, v| {
        let (t, n_expert, n_used) = (5usize, 7u32, 3u32);
        let mut scores = random(31, t * n_expert as usize, 3.0);
        // A token whose scores tie: the lower indices win.
        scores[..n_expert as usize]
            .iter_mut()
            .for_each(|s| *s = 0.5);
        let sb = upload_f32(gpu, &scores);
        for gating in [ExpertGating::Softmax, ExpertGating::Sigmoid] {
            for (normalize, scale) in [(true, 1.0), (false, 2.5)] {
                let experts = Experts {
                    n_expert,
                    n_used,
                    gating,
                    normalize,
                    scale,
                };
                let rb = upload_u32(gpu, &vec![0; 2 * t * n_used as usize]);
                let mut b = builder(gpu, step(t as u32));
                pollster::block_on(Kernels::new(gpu, v).moe_route(&mut b, &experts, &sb, &rb))
                    .unwrap();
                let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
                run(gpu, &plan, t as u32);
                let got = read_u32(gpu, &rb, 2 * t * n_used as usize);
                for (ti, row) in scores.chunks(n_expert as usize).enumerate() {
                    let want =
                        cpu_ref::route_experts(row, n_used as usize, gating, normalize, scale);
                    for (j, (e, w)) in want.into_iter().enumerate() {
                        let slot = ti * n_used as usize + j;
                        let what = format!(
                            "moe_route {gating:?} normalize={normalize} {v} token {ti} slot {j}"
                        );
                        assert_eq!(got[2 * slot] as usize, e, "{what}: expert");
                        assert_close(
                            &what,
                            &[f32::from_bits(got[2 * slot + 1])],
                            &[w as f32],
                            1e-6,
                            1e-5,
                        );
                    }
                }
            }
        }
    });
}

/// Each expert's products over the slots routed to it (every other slot untouched), in
/// every weight type: gate/up-style (a token's input shared by its slots, activations
/// out) and down-style (an input row per slot, f32 out); then the weighted sum into the
/// residual stream.
#[test]
fn moe_products_and_combine_match_reference() {
    for_each_variant(|gpu, v| {
        let (t, n_used, n_expert, n) = (3usize, 2usize, 3usize, 37usize);
        // (expert, weight) per slot: token 0 → 2, 0; token 1 → 1, 2; token 2 → 0, 1.
        let picks = [
            (2u32, 0.7f32),
            (0, 0.3),
            (1, 0.55),
            (2, 0.45),
            (0, 0.9),
            (1, 0.1),
        ];
        let routes: Vec<u32> = picks.iter().flat_map(|&(e, w)| [e, w.to_bits()]).collect();
        let rb = upload_u32(gpu, &routes);
        let types = weight_types()
            .into_iter()
            .map(|ty| (ty, 64))
            .chain(k_types().into_iter().map(|ty| (ty, 256)));
        for (ty, k) in types {
            let experts: Vec<(Vec<u8>, Vec<f32>)> = (0..n_expert)
                .map(|e| weights(ty, n, k, 40 + e as u64))
                .collect();
            let mats: Vec<QMatrix> = experts
                .iter()
                .map(|(bytes, _)| {
                    pollster::block_on(QMatrix::upload(gpu, "expert", ty, k as u32, &[bytes]))
                        .unwrap()
                })
                .collect();
            for per_slot in [false, true] {
                let x_rows = if per_slot { t * n_used } else { t };
                let x = round_act(v.act, &random(50, x_rows * k, 1.0));
                let xb = upload_act(gpu, v.act, &x);
                let out = if per_slot { Out::F32 } else { Out::Act };
                // Every slot is written by its own expert's dispatch only: a dispatch that
                // wrote other experts' slots would leave the wrong product there.
                let yb = if per_slot {
                    upload_f32(gpu, &vec![0.0; t * n_used * n])
                } else {
                    upload_act(gpu, v.act, &vec![0.0; t * n_used * n])
                };
                let mut b = builder(gpu, step(t as u32));
                for (e, m) in mats.iter().enumerate() {
                    let r = MoeRoute {
                        expert: e as u32,
                        n_used: n_used as u32,
                        x_per_slot: u32::from(per_slot),
                        _pad: 0,
                    };
                    let route = upload_u32(gpu, bytemuck::cast_slice(&[r]));
                    let args = MatArgs {
                        x: &xb,
                        x_stride: k as u32,
                        y: &yb,
                        y_stride: n as u32,
                        y_offset: 0,
                        out,
                        rows: Count::Tokens,
                        prologue: Prologue::Plain,
                    };
                    pollster::block_on(Kernels::new(gpu, v).moe_matvec(
                        &mut b,
                        m,
                        &args,
                        &route,
                        &rb,
                        n_used as u32,
                    ))
                    .unwrap();
                }
                let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
                run(gpu, &plan, t as u32);
                let mut want = Vec::with_capacity(t * n_used * n);
                for (slot, &(e, _)) in picks.iter().enumerate() {
                    let xr = if per_slot { slot } else { slot / n_used };
                    want.extend(cpu_ref::matmul(
                        &experts[e as usize].1,
                        n,
                        k,
                        &x[xr * k..(xr + 1) * k],
                        1,
                    ));
                }
                let got = if per_slot {
                    read_f32(gpu, &yb, want.len())
                } else {
                    read_act(gpu, v.act, &yb, want.len())
                };
                // As `check_product`: the output type's tolerance, widened for sums of k products.
                let (atol, rtol) = tol(if per_slot { Act::F32 } else { v.act });
                assert_close(
                    &format!("moe_matvec {ty} per_slot={per_slot} {v}"),
                    &got,
                    &want,
                    atol * (k as f32).sqrt(),
                    rtol,
                );
            }
        }
        // The weighted sum of the slots' outputs, added into the residual stream.
        let y = random(60, t * n_used * n, 2.0);
        let base = random(61, t * n, 1.0);
        let (yb, xb) = (upload_f32(gpu, &y), upload_f32(gpu, &base));
        let mut b = builder(gpu, step(t as u32));
        pollster::block_on(Kernels::new(gpu, v).moe_combine(
            &mut b,
            &yb,
            &rb,
            &xb,
            n as u32,
            n_used as u32,
        ))
        .unwrap();
        let plan = pollster::block_on(b.finish(gpu, "test")).unwrap();
        run(gpu, &plan, t as u32);
        let want: Vec<f32> = (0..t * n)
            .map(|i| {
                let (ti, c) = (i / n, i % n);
                base[i]
                    + (0..n_used)
                        .map(|j| picks[ti * n_used + j].1 * y[(ti * n_used + j) * n + c])
                        .sum::<f32>()
            })
            .collect();
        assert_close(
            &format!("moe_combine {v}"),
            &read_f32(gpu, &xb, t * n),
            &want,
            1e-5,
            1e-5,
        );
    });
}
