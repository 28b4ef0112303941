//! The paged KV cache and multi-sequence steps end to end on tiny generated models,
//! against the plain CPU forward pass: ragged batches, fork with copy-on-write, block
//! reuse, block sizes, sliding windows, and the refusals that keep the cache intact.

use std::sync::Arc;

use wisp_core::engine::{BatchEntry, Engine, EngineOptions, Logits};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::{Act, Gpu, KvType, Variant, VariantOverrides};
use wisp_core::kv::SeqId;
use wisp_core::model::FileBytes;
use wisp_tests::cpu_model::CpuModel;
use wisp_tests::gpu::{gpu, variants};
use wisp_tests::reference::{cosine, max_abs_diff};
use wisp_tests::tiny_model::{TinySpec, tiny_model};

struct Model {
    bytes: Vec<u8>,
    cpu: CpuModel,
}

fn model(spec: &TinySpec) -> Model {
    let bytes = tiny_model(spec);
    let cpu = CpuModel::load(&GgufFile::parse(&bytes).unwrap(), &bytes);
    Model { bytes, cpu }
}

fn engine(gpu: Arc<Gpu>, m: &Model, variant: Option<Variant>, options: EngineOptions) -> Engine {
    let file = GgufFile::parse(&m.bytes).unwrap();
    let variant = variant
        .map(|v| VariantOverrides {
            act: Some(v.act),
            reduce: Some(v.reduce),
            tier: Some(v.tier),
        })
        .unwrap_or_default();
    let options = EngineOptions { variant, ..options };
    pollster::block_on(Engine::load(
        gpu,
        &file,
        &FileBytes {
            file: &file,
            bytes: &m.bytes,
        },
        &options,
    ))
    .expect("load")
}

fn options(block: u32, pool_tokens: u32) -> EngineOptions {
    EngineOptions {
        n_ctx: 96,
        kv_pool_tokens: pool_tokens,
        kv_block: block,
        max_batch: 96,
        max_rows: 32,
        max_entries: 8,
        ..Default::default()
    }
}

/// f32 activations with an f32 cache match exact arithmetic tightly; f16 storage is within
/// its rounding; a Q8_0 cache within 8-bit quantization of the keys and values.
fn assert_close(what: &str, act: Act, kv: KvType, got: &[f32], want: &[f32]) {
    let (cos, diff) = (cosine(got, want), max_abs_diff(got, want));
    let ok = match (act, kv) {
        (Act::F32, KvType::F32) => cos >= 0.999_999 && diff <= 2e-3,
        (_, KvType::Q8_0) => cos >= 0.999 && diff <= 0.2,
        _ => cos >= 0.9999 && diff <= 0.05,
    };
    assert!(ok, "{what}: cosine {cos:.7}, max |Δ| {diff:.5}");
}

fn rows(e: &Engine, n: u32) -> Vec<Vec<f32>> {
    pollster::block_on(e.read_logits(0..n)).expect("logits")
}

#[test]
fn a_ragged_batch_gives_each_sequence_its_own_logits() {
    let gpu = gpu();
    let m = model(&TinySpec::default());
    let a: Vec<u32> = (0..30).map(|i| (i * 7 + 3) % 301).collect();
    let b: Vec<u32> = (0..12).map(|i| (i * 11 + 5) % 301).collect();
    let c: Vec<u32> = (0..9).map(|i| (i * 13 + 1) % 301).collect();
    let (want_a, want_b, want_c) = (m.cpu.forward(&a), m.cpu.forward(&b), m.cpu.forward(&c));
    for v in variants(&gpu) {
        for kv in [KvType::F32, KvType::F16, KvType::Q8_0] {
            let mut e = engine(
                gpu.clone(),
                &m,
                Some(v),
                EngineOptions {
                    kv_type: Some(kv),
                    ..options(16, 256)
                },
            );
            let (sa, sb, sc) = (
                e.create_sequence(),
                e.create_sequence(),
                e.create_sequence(),
            );
            // Step 1: a's first 20 tokens, b's first 11 (two prompts in one step).
            let n = e
                .step(&[
                    BatchEntry {
                        seq: sa,
                        tokens: &a[..20],
                        logits: Logits::Last,
                    },
                    BatchEntry {
                        seq: sb,
                        tokens: &b[..11],
                        logits: Logits::Last,
                    },
                ])
                .unwrap();
            assert_eq!(n, 2);
            let r = rows(&e, 2);
            assert_close(
                &format!("{v} {kv:?} step 1, a"),
                v.act,
                kv,
                &r[0],
                &want_a[19],
            );
            assert_close(
                &format!("{v} {kv:?} step 1, b"),
                v.act,
                kv,
                &r[1],
                &want_b[10],
            );
            // Step 2: b decodes one token, a gets a chunk of 10 (every position's logits),
            // c starts its prompt.
            let n = e
                .step(&[
                    BatchEntry {
                        seq: sb,
                        tokens: &b[11..12],
                        logits: Logits::Last,
                    },
                    BatchEntry {
                        seq: sa,
                        tokens: &a[20..30],
                        logits: Logits::All,
                    },
                    BatchEntry {
                        seq: sc,
                        tokens: &c,
                        logits: Logits::Last,
                    },
                ])
                .unwrap();
            assert_eq!(n, 12);
            let r = rows(&e, 12);
            assert_close(
                &format!("{v} {kv:?} step 2, b"),
                v.act,
                kv,
                &r[0],
                &want_b[11],
            );
            for i in 0..10 {
                assert_close(
                    &format!("{v} {kv:?} step 2, a at {}", 20 + i),
                    v.act,
                    kv,
                    &r[1 + i],
                    &want_a[20 + i],
                );
            }
            assert_close(
                &format!("{v} {kv:?} step 2, c"),
                v.act,
                kv,
                &r[11],
                &want_c[8],
            );
            assert_eq!(
                (
                    e.sequence_len(sa).unwrap(),
                    e.sequence_len(sb).unwrap(),
                    e.sequence_len(sc).unwrap()
                ),
                (30, 12, 9)
            );
        }
    }
}

#[test]
fn forks_share_their_prefix_and_copy_on_write() {
    let gpu = gpu();
    let m = model(&TinySpec::default());
    let prompt: Vec<u32> = (0..21).map(|i| (i * 5 + 2) % 301).collect();
    let (x, y) = ([17u32, 250, 9], [4u32, 100]);
    let want_x = m.cpu.forward(&[prompt.as_slice(), &x].concat());
    let want_y = m.cpu.forward(&[prompt.as_slice(), &y].concat());
    for v in variants(&gpu) {
        let mut e = engine(gpu.clone(), &m, Some(v), options(16, 256));
        let kv = e.kv_stats().kv_type;
        let a = e.create_sequence();
        e.step(&[BatchEntry {
            seq: a,
            tokens: &prompt,
            logits: Logits::None,
        }])
        .unwrap();
        let before = e.kv_stats().used_blocks;
        assert_eq!(before, 2, "21 positions in blocks of 16");
        let b = e.fork_sequence(a).unwrap();
        assert_eq!(
            e.kv_stats().used_blocks,
            before,
            "a fork stores the prompt once"
        );
        // Both continue in one step: the shared, half-full second block is copied for
        // one of them before either writes into it.
        e.step(&[
            BatchEntry {
                seq: a,
                tokens: &x,
                logits: Logits::All,
            },
            BatchEntry {
                seq: b,
                tokens: &y,
                logits: Logits::All,
            },
        ])
        .unwrap();
        assert_eq!(
            e.kv_stats().used_blocks,
            3,
            "one block copied, the first still shared"
        );
        let r = rows(&e, 5);
        for i in 0..3 {
            assert_close(
                &format!("{v} fork a at {}", 21 + i),
                v.act,
                kv,
                &r[i],
                &want_x[21 + i],
            );
        }
        for i in 0..2 {
            assert_close(
                &format!("{v} fork b at {}", 21 + i),
                v.act,
                kv,
                &r[3 + i],
                &want_y[21 + i],
            );
        }
        e.remove_sequence(a).unwrap();
        e.remove_sequence(b).unwrap();
        assert_eq!(e.kv_stats().used_blocks, 0);
    }
}

#[test]
fn freed_blocks_are_reused_without_stale_data() {
    let gpu = gpu();
    let m = model(&TinySpec::default());
    let long: Vec<u32> = (0..60).map(|i| (i * 3 + 1) % 301).collect();
    let short: Vec<u32> = (0..25).map(|i| (i * 17 + 8) % 301).collect();
    let want = m.cpu.forward(&short);
    // A pool of exactly 64 positions: the second sequence must reuse the first's blocks.
    let mut e = engine(gpu.clone(), &m, None, options(16, 64));
    let kv = e.kv_stats().kv_type;
    let act = e.variant.act;
    let a = e.create_sequence();
    e.step(&[BatchEntry {
        seq: a,
        tokens: &long[..32],
        logits: Logits::None,
    }])
    .unwrap();
    e.step(&[BatchEntry {
        seq: a,
        tokens: &long[32..],
        logits: Logits::None,
    }])
    .unwrap();
    e.remove_sequence(a).unwrap();
    let b = e.create_sequence();
    e.step(&[BatchEntry {
        seq: b,
        tokens: &short,
        logits: Logits::All,
    }])
    .unwrap();
    for (i, row) in rows(&e, 25).iter().enumerate() {
        assert_close(
            &format!("reused blocks, position {i}"),
            act,
            kv,
            row,
            &want[i],
        );
    }
    // Truncating and writing again overwrites in place.
    e.truncate_sequence(b, 10).unwrap();
    e.step(&[BatchEntry {
        seq: b,
        tokens: &short[10..],
        logits: Logits::Last,
    }])
    .unwrap();
    assert_close("after truncate", act, kv, &rows(&e, 1)[0], &want[24]);
}

#[test]
fn block_sizes_and_allocation_order_do_not_change_the_logits() {
    let gpu = gpu();
    let m = model(&TinySpec::default());
    let text: Vec<u32> = (0..70).map(|i| (i * 29 + 4) % 301).collect();
    let want = m.cpu.forward(&text);
    for block in [16, 32] {
        let mut e = engine(gpu.clone(), &m, None, options(block, 512));
        let kv = e.kv_stats().kv_type;
        let act = e.variant.act;
        // Churn: sequences that come and go leave the free list out of order.
        let filler: Vec<SeqId> = (0..4).map(|_| e.create_sequence()).collect();
        for (i, &s) in filler.iter().enumerate() {
            e.step(&[BatchEntry {
                seq: s,
                tokens: &text[..(10 + 13 * i)],
                logits: Logits::None,
            }])
            .unwrap();
        }
        e.remove_sequence(filler[1]).unwrap();
        e.remove_sequence(filler[3]).unwrap();
        let s = e.create_sequence();
        for chunk in text.chunks(23) {
            e.step(&[BatchEntry {
                seq: s,
                tokens: chunk,
                logits: Logits::None,
            }])
            .unwrap();
        }
        e.truncate_sequence(s, 69).unwrap();
        e.step(&[BatchEntry {
            seq: s,
            tokens: &text[69..],
            logits: Logits::Last,
        }])
        .unwrap();
        assert_close(
            &format!("block {block}, churned pool"),
            act,
            kv,
            &rows(&e, 1)[0],
            &want[69],
        );
    }
}

#[test]
fn a_sliding_window_masks_old_keys_and_frees_their_blocks() {
    let gpu = gpu();
    let m = model(&TinySpec {
        window: Some(20),
        ..TinySpec::default()
    });
    let text: Vec<u32> = (0..90).map(|i| (i * 31 + 6) % 301).collect();
    let want = m.cpu.forward(&text);
    for v in variants(&gpu) {
        let mut e = engine(gpu.clone(), &m, Some(v), options(16, 96));
        let kv = e.kv_stats().kv_type;
        let s = e.create_sequence();
        e.step(&[BatchEntry {
            seq: s,
            tokens: &text[..30],
            logits: Logits::All,
        }])
        .unwrap();
        for (i, row) in rows(&e, 8).iter().enumerate() {
            assert_close(
                &format!("{v} window, prefill at {i}"),
                v.act,
                kv,
                row,
                &want[i],
            );
        }
        for (i, &t) in text.iter().enumerate().skip(30) {
            e.step(&[BatchEntry {
                seq: s,
                tokens: &[t],
                logits: Logits::Last,
            }])
            .unwrap();
            assert_close(
                &format!("{v} window, decode at {i}"),
                v.act,
                kv,
                &rows(&e, 1)[0],
                &want[i],
            );
            // Only the blocks the next query can see stay: 20 positions span at most 3 blocks of 16.
            assert!(
                e.kv_stats().used_blocks <= 3,
                "{v}: {} blocks held at position {i}",
                e.kv_stats().used_blocks
            );
        }
    }
}

#[test]
fn a_full_pool_or_context_refuses_and_changes_nothing() {
    let gpu = gpu();
    let m = model(&TinySpec::default());
    let mut e = engine(gpu.clone(), &m, None, options(16, 48));
    let kv = e.kv_stats().kv_type;
    let act = e.variant.act;
    let text: Vec<u32> = (0..40).map(|i| (i * 7 + 1) % 301).collect();
    let a = e.create_sequence();
    e.step(&[BatchEntry {
        seq: a,
        tokens: &text[..30],
        logits: Logits::None,
    }])
    .unwrap();
    let b = e.create_sequence();
    // 48 positions: a holds 2 blocks, b's 20 tokens need 2 more but only 1 is free.
    let err = e
        .step(&[BatchEntry {
            seq: b,
            tokens: &text[..20],
            logits: Logits::Last,
        }])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("needed") && msg.contains("wait for sequences to finish"),
        "{msg}"
    );
    // A sequence past the context (96) is refused too, naming the limit.
    let err = e
        .step(&[BatchEntry {
            seq: a,
            tokens: &[3; 70],
            logits: Logits::Last,
        }])
        .unwrap_err();
    assert!(err.to_string().contains("context of 96"), "{err}");
    // Nothing moved: a continues exactly where it was.
    assert_eq!(
        (e.sequence_len(a).unwrap(), e.sequence_len(b).unwrap()),
        (30, 0)
    );
    e.step(&[BatchEntry {
        seq: a,
        tokens: &text[30..31],
        logits: Logits::Last,
    }])
    .unwrap();
    assert_close(
        "after refusals",
        act,
        kv,
        &rows(&e, 1)[0],
        &m.cpu.forward(&text[..31])[30],
    );
}

#[test]
fn an_8k_prompt_needs_no_memory_quadratic_in_its_length() {
    // A fresh device, so its allocation count is this engine's alone.
    let gpu = wisp_tests::gpu::gpu_with_binding_limit(u64::MAX);
    let m = model(&TinySpec {
        n_ctx: 8192,
        ..TinySpec::default()
    });
    let n = 8192u32;
    let text: Vec<u32> = (0..n).map(|i| (i * 7919 + 13) % 301).collect();
    let one = EngineOptions {
        n_ctx: n,
        max_batch: n,
        max_rows: 32,
        max_entries: 4,
        kv_type: Some(KvType::F32),
        ..Default::default()
    };
    let mut e = engine(gpu.clone(), &m, None, one);
    let allocated = gpu.allocated_bytes();
    // One f32 score matrix for one head would be n² × 4 bytes.
    let scores = n as u64 * n as u64 * 4;
    assert!(
        allocated < scores / 4,
        "the engine holds {allocated} bytes at 8k context, not far from a {scores}-byte score matrix"
    );
    // The whole prompt in one step, then the same prompt in chunks of 1000.
    let s = e.create_sequence();
    e.step(&[BatchEntry {
        seq: s,
        tokens: &text,
        logits: Logits::Last,
    }])
    .unwrap();
    assert_eq!(gpu.allocated_bytes(), allocated, "a step allocates nothing");
    let whole = rows(&e, 1).remove(0);
    let c = e.create_sequence();
    let err = e.step(&[BatchEntry {
        seq: c,
        tokens: &text[..10],
        logits: Logits::None,
    }]);
    assert!(err.is_err(), "the pool of 8192 positions is full");
    e.remove_sequence(s).unwrap();
    for (i, chunk) in text.chunks(1000).enumerate() {
        let logits = if (i + 1) * 1000 >= text.len() {
            Logits::Last
        } else {
            Logits::None
        };
        e.step(&[BatchEntry {
            seq: c,
            tokens: chunk,
            logits,
        }])
        .unwrap();
    }
    let chunked = rows(&e, 1).remove(0);
    assert_close(
        "8k prompt, whole against chunks of 1000",
        e.variant.act,
        KvType::F32,
        &whole,
        &chunked,
    );
    eprintln!(
        "8k context: {allocated} bytes allocated ({:.1} MiB); one score matrix would be {} MiB",
        allocated as f64 / 1048576.0,
        scores >> 20
    );
}
