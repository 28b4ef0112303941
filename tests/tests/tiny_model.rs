//! Tiny generated llama models end to end: the GPU engine against the plain CPU forward
//! pass at every position, in every kernel variant; decode and chunked prefill against
//! one-shot prefill; tensors split across buffers; and bad models and requests, each
//! with an error that names the problem.

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;
use std::sync::Arc;

use wisp_core::engine::{BatchEntry, Engine, EngineError, EngineOptions, HeadOutput, Logits};
use wisp_core::gguf::{GgufFile, TensorInfo, Value};
use wisp_core::gpu::{Act, Gpu, Variant, VariantOverrides};
use wisp_core::model::{
    Counted, FeedForward, FileBytes, PROGRESS_PIECE, TensorFuture, TensorSource,
};
use wisp_core::quant::GgmlType;
use wisp_core::sampling::{Sampler, SamplerConfig};
use wisp_tests::cpu_model::CpuModel;
use wisp_tests::gpu::{covering_variants, gpu, gpu_with_binding_limit, variants};
use wisp_tests::reference::{cosine, max_abs_diff};
use wisp_tests::tiny_model::{TinySpec, tiny_model, tiny_writer};

const PROMPT: [u32; 11] = [1, 17, 300, 42, 42, 5, 250, 9, 128, 77, 0];

fn load(
    gpu: Arc<Gpu>,
    bytes: &[u8],
    variant: Option<Variant>,
    max_batch: u32,
) -> Result<Engine, wisp_core::Error> {
    load_ctx(gpu, bytes, variant, max_batch, 64)
}

fn load_ctx(
    gpu: Arc<Gpu>,
    bytes: &[u8],
    variant: Option<Variant>,
    max_batch: u32,
    n_ctx: u32,
) -> Result<Engine, wisp_core::Error> {
    let file = GgufFile::parse(bytes)?;
    let overrides = variant
        .map(|v| VariantOverrides {
            act: Some(v.act),
            reduce: Some(v.reduce),
            tier: Some(v.tier),
        })
        .unwrap_or_default();
    let options = EngineOptions {
        n_ctx,
        max_batch,
        max_rows: max_batch.min(8),
        max_entries: 4,
        variant: overrides,
        ..Default::default()
    };
    pollster::block_on(Engine::load(
        gpu,
        &file,
        &FileBytes { file: &file, bytes },
        &options,
    ))
}

/// GPU logits against the CPU reference: tight for f32 activations; f16 storage rounds
/// every activation to 11 bits.
fn assert_logits_close(what: &str, act: Act, got: &[f32], want: &[f32]) {
    let (cos, diff) = (cosine(got, want), max_abs_diff(got, want));
    let ok = match act {
        Act::F32 => cos >= 0.999_999 && diff <= 2e-3,
        Act::F16 => cos >= 0.9999 && diff <= 0.05,
    };
    assert!(ok, "{what}: cosine {cos:.7}, max |Δ| {diff:.5}");
}

#[test]
fn every_variant_matches_the_cpu_reference_at_every_position() {
    let gpu = gpu();
    for spec in [
        TinySpec::default(),
        TinySpec {
            tied: false,
            embd_type: GgmlType::F16,
            ..TinySpec::default()
        },
    ] {
        let bytes = tiny_model(&spec);
        let file = GgufFile::parse(&bytes).unwrap();
        let want = CpuModel::load(&file, &bytes).forward(&PROMPT);
        for v in variants(&gpu) {
            let mut e = load(gpu.clone(), &bytes, Some(v), 16).expect("load");
            let got = pollster::block_on(e.prefill_logits(&PROMPT)).expect("logits");
            for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_logits_close(&format!("{v} tied={} position {p}", spec.tied), v.act, g, w);
            }
        }
    }
}

#[test]
fn decode_and_chunked_prefill_agree_with_one_shot_prefill() {
    let gpu = gpu();
    let bytes = tiny_model(&TinySpec::default());
    let file = GgufFile::parse(&bytes).unwrap();
    let want = CpuModel::load(&file, &bytes).forward(&PROMPT);
    for v in variants(&gpu) {
        // Prefill in chunks of 3 (the last chunk shorter), then decode one at a time.
        let mut e = load(gpu.clone(), &bytes, Some(v), 3).expect("load");
        e.prefill(&PROMPT[..7]).expect("prefill");
        let got = pollster::block_on(e.logits()).unwrap();
        assert_logits_close(&format!("{v} chunked prefill"), v.act, &got, &want[6]);
        for (i, &t) in PROMPT.iter().enumerate().skip(7) {
            e.decode(t).expect("decode");
            let got = pollster::block_on(e.logits()).unwrap();
            assert_logits_close(&format!("{v} decode at {i}"), v.act, &got, &want[i]);
        }
        assert_eq!(e.position(), PROMPT.len() as u32);
        // Rewinding and decoding again overwrites the cache in place.
        e.truncate(5);
        e.decode(PROMPT[5]).unwrap();
        let got = pollster::block_on(e.logits()).unwrap();
        assert_logits_close(&format!("{v} after truncate"), v.act, &got, &want[5]);
    }
}

/// Tiny qwen2 and gemma3 models (every option of the block: QKV bias, NEOX RoPE,
/// QK-norm, post-norms, GeGLU, embedding scaling, windowed and global layers with their
/// own RoPE bases) against the CPU reference at every position, in batched prefill and
/// in decoding, in variants covering every axis value (the kernels behind each option
/// are checked in every combination by `tests/kernels.rs`).
#[test]
fn qwen2_and_gemma3_blocks_match_the_cpu_reference() {
    let gpu = gpu();
    let specs = [
        TinySpec {
            arch: "qwen2",
            tied: false,
            ..TinySpec::default()
        },
        // A window of 4 over an 11-token prompt: the windowed layers mask, the global one not.
        TinySpec {
            arch: "gemma3",
            window: Some(4),
            ..TinySpec::default()
        },
    ];
    for spec in specs {
        let bytes = tiny_model(&spec);
        let file = GgufFile::parse(&bytes).unwrap();
        let cpu = CpuModel::load(&file, &bytes);
        if spec.arch == "gemma3" {
            assert_eq!(cpu.cfg.layer_windows, [4, 0, 4]);
        }
        let want = cpu.forward(&PROMPT);
        for v in covering_variants(&gpu) {
            let mut e = load(gpu.clone(), &bytes, Some(v), 16).expect("load");
            let got = pollster::block_on(e.prefill_logits(&PROMPT)).expect("logits");
            for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_logits_close(
                    &format!("{}, {v}, batched prefill position {p}", spec.arch),
                    v.act,
                    g,
                    w,
                );
            }
            e.reset();
            for (p, &t) in PROMPT.iter().enumerate() {
                e.decode(t).expect("decode");
                let got = pollster::block_on(e.logits()).unwrap();
                assert_logits_close(
                    &format!("{}, {v}, decode position {p}", spec.arch),
                    v.act,
                    &got,
                    &want[p],
                );
            }
        }
    }
}

/// A Mixtral-style mixture of experts (4 experts, 2 per token, in every layer): batched
/// prefill (where the prompt's tokens pick different experts) and decoding, against the
/// CPU reference at every position, in every variant.
#[test]
fn a_mixture_of_experts_matches_the_cpu_reference_in_prefill_and_decode() {
    let gpu = gpu();
    let spec = TinySpec {
        experts: Some((4, 2)),
        ..TinySpec::default()
    };
    let bytes = tiny_model(&spec);
    let file = GgufFile::parse(&bytes).unwrap();
    let cpu = CpuModel::load(&file, &bytes);
    let want = cpu.forward(&PROMPT);
    for layer in 0..spec.n_layer as usize {
        let mut picks = cpu.routes(&PROMPT, layer);
        picks.iter_mut().for_each(|p| p.sort());
        picks.sort();
        picks.dedup();
        assert!(
            picks.len() >= 3,
            "layer {layer}: the prompt's tokens pick only {picks:?}"
        );
    }
    for v in variants(&gpu) {
        let mut e = load(gpu.clone(), &bytes, Some(v), 16).expect("load");
        let got = pollster::block_on(e.prefill_logits(&PROMPT)).expect("logits");
        for (p, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_logits_close(
                &format!("experts, {v}, batched prefill position {p}"),
                v.act,
                g,
                w,
            );
        }
        e.reset();
        for (p, &t) in PROMPT.iter().enumerate() {
            e.decode(t).expect("decode");
            let got = pollster::block_on(e.logits()).unwrap();
            assert_logits_close(
                &format!("experts, {v}, decode position {p}"),
                v.act,
                &got,
                &want[p],
            );
        }
    }
}

#[test]
fn tensors_split_across_buffers_give_the_same_logits() {
    // 48 KiB bindings: the embedding (1501 rows of 102 bytes) and the fused gate/up
    // projections (960 rows of 60 bytes) are split across buffers.
    let gpu = gpu_with_binding_limit(48 * 1024);
    let spec = TinySpec {
        vocab: 1501,
        n_ff: 480,
        ..TinySpec::default()
    };
    let bytes = tiny_model(&spec);
    let file = GgufFile::parse(&bytes).unwrap();
    let want = CpuModel::load(&file, &bytes).forward(&PROMPT);
    // Every variant: each tier sizes its own buffers (split-K partials among them).
    for v in variants(&gpu) {
        let mut e =
            load_ctx(gpu.clone(), &bytes, Some(v), 4, 32).expect("load with small bindings");
        let FeedForward::Dense { gate_up, .. } = &e.weights.layers[0].ffn else {
            panic!("a dense model")
        };
        assert!(gate_up.parts[0].0.chunks.len() >= 2);
        assert!(
            e.weights.token_embd.chunks.len() >= 3,
            "embedding in {} buffers",
            e.weights.token_embd.chunks.len()
        );
        let got = pollster::block_on(e.prefill_logits(&PROMPT)).expect("logits");
        for (p, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_logits_close(&format!("split, position {p}, {v}"), e.variant.act, g, w);
        }
        // The argmax head over the split LM head picks the last position's argmax.
        let last = PROMPT.len() - 1;
        e.truncate(last as u32);
        let batch = [BatchEntry {
            seq: e.default_sequence(),
            tokens: &PROMPT[last..],
            logits: Logits::Last,
        }];
        e.step_to(&batch, HeadOutput::Argmax).unwrap();
        let mut greedy = Sampler::new(SamplerConfig::greedy()).unwrap();
        let token = pollster::block_on(e.sample_rows(&mut [&mut greedy])).unwrap();
        assert_eq!(token, [argmax(&got[last])], "split argmax head, {v}");
    }
}

/// A source that fetches, as the browser's does: owned bytes, a few at a time.
struct Fetching<'a> {
    file: &'a GgufFile,
    bytes: &'a [u8],
    piece: u64,
    largest: Cell<u64>,
    fetches: Cell<u32>,
}

impl TensorSource for Fetching<'_> {
    fn max_piece(&self) -> u64 {
        self.piece
    }

    fn fetch<'a>(&'a self, info: &'a TensorInfo) -> TensorFuture<'a> {
        self.fetch_range(info, 0..info.n_bytes())
    }

    fn fetch_range<'a>(&'a self, info: &'a TensorInfo, range: Range<u64>) -> TensorFuture<'a> {
        Box::pin(async move {
            let whole = self.file.tensor_range(info)?;
            let bytes = self.bytes
                [(whole.start + range.start) as usize..(whole.start + range.end) as usize]
                .to_vec();
            self.largest.set(self.largest.get().max(bytes.len() as u64));
            self.fetches.set(self.fetches.get() + 1);
            Ok(Cow::Owned(bytes))
        })
    }
}

#[test]
fn a_fetching_source_uploads_pieces_into_split_buffers_and_gives_the_same_logits() {
    // Pieces of at most 1000 bytes (whole rows: 102-byte embedding rows go 9 at a time),
    // written into 48 KiB buffers, so pieces land on both sides of buffer boundaries; with
    // experts, each expert's rows come from its slice of the 3-D tensor.
    let gpu = gpu_with_binding_limit(48 * 1024);
    for spec in [
        TinySpec {
            vocab: 1501,
            n_ff: 480,
            ..TinySpec::default()
        },
        TinySpec {
            experts: Some((4, 2)),
            ..TinySpec::default()
        },
    ] {
        let bytes = tiny_model(&spec);
        let file = GgufFile::parse(&bytes).unwrap();
        let want = CpuModel::load(&file, &bytes).forward(&PROMPT);
        let source = Fetching {
            file: &file,
            bytes: &bytes,
            piece: 1000,
            largest: Cell::new(0),
            fetches: Cell::new(0),
        };
        let options = EngineOptions {
            n_ctx: 32,
            max_batch: 4,
            max_rows: 4,
            max_entries: 4,
            ..Default::default()
        };
        let mut e = pollster::block_on(Engine::load(gpu.clone(), &file, &source, &options))
            .expect("load from a fetching source");
        // Vectors (norms) are fetched whole; every matrix row is under 1000 bytes.
        let largest_vector = file
            .tensors
            .iter()
            .filter(|t| t.dims.len() == 1)
            .map(|t| t.n_bytes())
            .max()
            .unwrap();
        assert!(
            source.largest.get() <= 1000.max(largest_vector),
            "a fetch of {} bytes",
            source.largest.get()
        );
        assert!(
            source.fetches.get() as usize > 2 * file.tensors.len(),
            "{} fetches for {} tensors",
            source.fetches.get(),
            file.tensors.len()
        );
        let got = pollster::block_on(e.prefill_logits(&PROMPT)).expect("logits");
        for (p, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_logits_close(
                &format!(
                    "fetched in pieces ({:?} experts), position {p}",
                    spec.experts
                ),
                e.variant.act,
                g,
                w,
            );
        }
    }
}

fn load_err(bytes: &[u8]) -> String {
    match load(gpu(), bytes, None, 8) {
        Ok(_) => panic!("the model loaded, but it is broken"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_models_are_refused_with_a_clear_error() {
    let spec = TinySpec::default();
    // A projection whose shape does not match the metadata.
    let mut w = tiny_writer(&spec);
    w.remove_tensor("blk.1.attn_q.weight");
    w.tensor_from_f32(
        "blk.1.attn_q.weight",
        &[96, 64],
        GgmlType::F32,
        &vec![0.0; 96 * 64],
    )
    .unwrap();
    let e = load_err(&w.to_bytes());
    assert!(
        e.contains("blk.1.attn_q.weight") && e.contains("[96, 64]") && e.contains("[96, 96]"),
        "{e}"
    );

    // A missing required key.
    let mut w = tiny_writer(&spec);
    w.remove_metadata("llama.embedding_length");
    let e = load_err(&w.to_bytes());
    assert_eq!(e, "missing required metadata key llama.embedding_length");

    // A missing tensor.
    let mut w = tiny_writer(&spec);
    w.remove_tensor("blk.2.ffn_up.weight");
    let e = load_err(&w.to_bytes());
    assert!(e.contains("blk.2.ffn_up.weight"), "{e}");

    // A tensor type with no GPU kernel (IQ2_XXS blocks hold 256 values, so this model
    // has a 256-wide feed-forward).
    let e = {
        let mut w = tiny_writer(&TinySpec {
            n_ff: 256,
            ..spec.clone()
        });
        w.remove_tensor("blk.0.ffn_down.weight");
        let len = GgmlType::IQ2_XXS.bytes_for(256 * 96).unwrap() as usize;
        w.tensor(
            "blk.0.ffn_down.weight",
            &[256, 96],
            GgmlType::IQ2_XXS,
            vec![0; len],
        )
        .unwrap();
        load_err(&w.to_bytes())
    };
    assert_eq!(
        e,
        "unsupported tensor type IQ2_XXS in tensor blk.0.ffn_down.weight"
    );

    // An architecture Wisp does not run.
    let mut w = tiny_writer(&spec);
    w.metadata("general.architecture", Value::from("mamba"))
        .unwrap();
    let e = load_err(&w.to_bytes());
    assert!(e.contains("unsupported architecture \"mamba\""), "{e}");

    // Heads that do not divide.
    let mut w = tiny_writer(&spec);
    w.metadata("llama.attention.head_count_kv", Value::from(4u32))
        .unwrap();
    let e = load_err(&w.to_bytes());
    assert!(e.contains("head_count"), "{e}");

    // Experts: more used than exist; an expert tensor of the wrong shape; a missing router.
    let moe = TinySpec {
        experts: Some((4, 2)),
        ..spec.clone()
    };
    let mut w = tiny_writer(&moe);
    w.metadata("llama.expert_used_count", Value::from(5u32))
        .unwrap();
    let e = load_err(&w.to_bytes());
    assert!(
        e.contains("llama.expert_used_count = 5") && e.contains("llama.expert_count = 4"),
        "{e}"
    );
    let mut w = tiny_writer(&moe);
    w.remove_tensor("blk.1.ffn_up_exps.weight");
    w.tensor_from_f32(
        "blk.1.ffn_up_exps.weight",
        &[96, 160, 3],
        GgmlType::F32,
        &vec![0.0; 96 * 160 * 3],
    )
    .unwrap();
    let e = load_err(&w.to_bytes());
    assert!(
        e.contains("blk.1.ffn_up_exps.weight") && e.contains("[96, 160, 4]"),
        "{e}"
    );
    let mut w = tiny_writer(&moe);
    w.remove_tensor("blk.0.ffn_gate_inp.weight");
    let e = load_err(&w.to_bytes());
    assert!(e.contains("blk.0.ffn_gate_inp.weight"), "{e}");

    // Architecture-specific tensors: qwen2's biases, gemma3's norms.
    let mut w = tiny_writer(&TinySpec {
        arch: "qwen2",
        ..spec.clone()
    });
    w.remove_tensor("blk.2.attn_k.bias");
    let e = load_err(&w.to_bytes());
    assert!(e.contains("blk.2.attn_k.bias"), "{e}");
    let mut w = tiny_writer(&TinySpec {
        arch: "gemma3",
        ..spec.clone()
    });
    w.remove_tensor("blk.0.post_ffw_norm.weight");
    let e = load_err(&w.to_bytes());
    assert!(e.contains("blk.0.post_ffw_norm.weight"), "{e}");
}

/// The index of the largest logit, the lowest among equals (as the GPU picks).
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn argmax_heads_pick_the_largest_logit_of_every_row() {
    // One row (the one-row head), 3 (the small-batch head on CPU adapters) and 11 (the
    // matrix-matrix head, whose logits one pass then reads): the argmax head's tokens are
    // the argmaxes of the logits head's rows, in every variant the adapter runs.
    let gpu = gpu();
    let bytes = tiny_model(&TinySpec::default());
    let file = GgufFile::parse(&bytes).unwrap();
    for v in variants(&gpu) {
        let options = EngineOptions {
            n_ctx: 64,
            max_batch: 16,
            max_rows: 12,
            max_entries: 4,
            variant: VariantOverrides {
                act: Some(v.act),
                reduce: Some(v.reduce),
                tier: Some(v.tier),
            },
            ..Default::default()
        };
        let source = FileBytes {
            file: &file,
            bytes: &bytes,
        };
        let mut e =
            pollster::block_on(Engine::load(gpu.clone(), &file, &source, &options)).expect("load");
        let seq = e.create_sequence();
        e.step(&[BatchEntry {
            seq,
            tokens: &PROMPT[..3],
            logits: Logits::None,
        }])
        .unwrap();
        for (tokens, logits) in [
            (&PROMPT[3..4], Logits::Last),
            (&PROMPT[3..6], Logits::All),
            (&PROMPT[..11], Logits::All),
        ] {
            let batch = [BatchEntry {
                seq,
                tokens,
                logits,
            }];
            let rows = e.step(&batch).unwrap();
            let read = pollster::block_on(e.read_logits(0..rows)).unwrap();
            let want: Vec<u32> = read.iter().map(|r| argmax(r)).collect();
            e.truncate_sequence(seq, 3).unwrap();

            assert_eq!(e.step_to(&batch, HeadOutput::Argmax).unwrap(), rows);
            let mut samplers: Vec<Sampler> = (0..rows)
                .map(|_| Sampler::new(SamplerConfig::greedy()).unwrap())
                .collect();
            let mut refs: Vec<&mut Sampler> = samplers.iter_mut().collect();
            let got = pollster::block_on(e.sample_rows(&mut refs)).unwrap();
            assert_eq!(got, want, "{v}: {rows} rows");
            e.truncate_sequence(seq, 3).unwrap();
        }

        // After an argmax head there are no logits to read, nor to sample from.
        let batch = [BatchEntry {
            seq,
            tokens: &PROMPT[3..4],
            logits: Logits::Last,
        }];
        e.step_to(&batch, HeadOutput::Argmax).unwrap();
        let err = pollster::block_on(e.read_logits(0..1)).unwrap_err();
        assert!(
            err.to_string().contains("kept only each row's argmax"),
            "{err}"
        );
        let mut sampling = Sampler::new(SamplerConfig::default()).unwrap();
        let err = pollster::block_on(e.sample_rows(&mut [&mut sampling])).unwrap_err();
        assert!(
            err.to_string().contains("not greedy without penalties"),
            "{err}"
        );
    }
}

#[test]
fn bad_requests_are_refused_and_leave_the_cache_intact() {
    let bytes = tiny_model(&TinySpec::default());
    let mut e = load(gpu(), &bytes, None, 8).unwrap();
    let err = e.prefill(&[]).unwrap_err();
    assert!(
        matches!(err, wisp_core::Error::Engine(EngineError::EmptyPrompt)),
        "{err}"
    );
    e.prefill(&PROMPT[..5]).unwrap();
    // 64 positions of context: 5 used, 60 more do not fit.
    let err = e.prefill(&[3; 60]).unwrap_err();
    assert!(
        err.to_string().contains("do not fit in the context of 64"),
        "{err}"
    );
    let err = e.prefill(&[301]).unwrap_err();
    assert!(
        err.to_string()
            .contains("token id 301 is outside the vocabulary of 301"),
        "{err}"
    );
    // The refused requests changed nothing: the cache still holds the 5 tokens.
    assert_eq!(e.position(), 5);
    let before = pollster::block_on(e.logits()).unwrap();
    let file = GgufFile::parse(&bytes).unwrap();
    let want = CpuModel::load(&file, &bytes).forward(&PROMPT[..5]);
    assert_logits_close("after refused requests", e.variant.act, &before, &want[4]);
}

#[test]
fn a_counted_source_reports_every_byte_once_up_to_the_total() {
    // What the desktop app's load progress bar reads: calls after every piece, never
    // going back, ending at exactly the bytes of all tensors; the model loads the same.
    let gpu = gpu();
    let bytes = tiny_model(&TinySpec::default());
    let file = GgufFile::parse(&bytes).unwrap();
    let inner = FileBytes {
        file: &file,
        bytes: &bytes,
    };
    let calls = std::cell::RefCell::new(Vec::new());
    let on_bytes = |done: u64, total: u64| calls.borrow_mut().push((done, total));
    let counted = Counted::new(&inner, &file, &on_bytes);
    let total: u64 = file.tensors.iter().map(|t| t.n_bytes()).sum();
    assert_eq!(counted.total(), total);
    assert_eq!(
        counted.max_piece(),
        PROGRESS_PIECE,
        "a memory map has no limit of its own"
    );
    let options = EngineOptions {
        n_ctx: 32,
        ..Default::default()
    };
    let mut e = pollster::block_on(Engine::load(gpu, &file, &counted, &options))
        .expect("load through a counted source");
    let calls = calls.into_inner();
    assert!(
        calls.len() >= file.tensors.len(),
        "{} calls for {} tensors",
        calls.len(),
        file.tensors.len()
    );
    assert!(
        calls.windows(2).all(|w| w[0].0 < w[1].0),
        "progress went back or stood still: {calls:?}"
    );
    assert!(calls.iter().all(|&(_, t)| t == total));
    assert_eq!(calls.last().unwrap().0, total);
    let want = CpuModel::load(&file, &bytes).forward(&PROMPT);
    let got = pollster::block_on(e.prefill_logits(&PROMPT)).expect("logits");
    assert_logits_close(
        "counted source",
        e.variant.act,
        &got[got.len() - 1],
        &want[want.len() - 1],
    );
}
