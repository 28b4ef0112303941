//! A 1k-token text through SmolLM2 three ways — one step for the whole text, steps of
//! 100 tokens, and one token per step — must give the same logits at every position.
//! The three ways use different kernels (batched products and flash attention, or
//! matrix-vector products and split-K decoding), so they differ by rounding: within the
//! reference tolerance of the adapter's activation precision (tests/reference/README.md).
//!
//! One token per step runs over the text's last quarter, after a one-step prefill of the
//! rest: decoding there reads a long cache (split over several work items on either
//! tier) that the batched kernels wrote. Decoding from position 0 is checked by
//! `tiny_model.rs` and `model_references.rs`; a decode step per position of the whole
//! text would make this the slowest test of the suite on a software adapter.

use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::{Act, KvType};
use wisp_core::model::FileBytes;
use wisp_core::tokenizer::Tokenizer;
use wisp_tests::gpu::gpu;
use wisp_tests::model_path;
use wisp_tests::reference::{cosine, max_abs_diff, top_k};

const N: usize = 1024;
/// Where one token per step starts.
const DECODE_FROM: usize = N - N / 4;

#[test]
fn one_chunk_chunks_of_100_and_token_by_token_agree_over_1k_tokens() {
    let bytes = std::fs::read(model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).expect("read model");
    let file = GgufFile::parse(&bytes).expect("parse");
    let tokenizer = Tokenizer::from_gguf(&file.metadata).expect("tokenizer");
    let fixture = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ppl.txt"))
        .expect("fixture");
    let mut ids = Vec::new();
    while ids.len() < N {
        ids.extend(tokenizer.encode(&fixture, false).expect("encode"));
    }
    ids.truncate(N);
    let act = std::cell::Cell::new(None);
    // Steps of `chunk` tokens from position `from`, after one step for the tokens before.
    let run = |from: usize, chunk: usize, each: &mut dyn FnMut(usize, Vec<f32>)| {
        // f32 keys and values: the KV cache adds no rounding of its own.
        let max_batch = if from > 0 { from } else { chunk } as u32;
        let options = EngineOptions {
            n_ctx: N as u32,
            max_batch,
            max_rows: max_batch.min(32),
            kv_type: Some(KvType::F32),
            ..Default::default()
        };
        let mut e = pollster::block_on(Engine::load(
            gpu(),
            &file,
            &FileBytes {
                file: &file,
                bytes: &bytes,
            },
            &options,
        ))
        .expect("load");
        act.set(Some(e.variant.act));
        if from > 0 {
            e.prefill(&ids[..from]).expect("prefill");
        }
        for (i, step) in ids[from..].chunks(chunk).enumerate() {
            let at = from + i * chunk;
            let logits = e.prefill_logits_with(step, |p, row| each(at + p, row));
            pollster::block_on(logits).expect("step");
        }
    };
    let mut whole: Vec<Vec<f32>> = Vec::with_capacity(N);
    run(0, N, &mut |_, row| whole.push(row));
    // The reference README's tolerances for f32 and f16 activations.
    let (max_diff, min_cos) = match act.get().expect("ran") {
        Act::F32 => (0.05f32, 0.99999f64),
        Act::F16 => (0.5, 0.9995),
    };
    assert_eq!(whole.len(), N);
    for (how, from, chunk) in [
        ("chunks of 100", 0, 100),
        ("token by token", DECODE_FROM, 1),
    ] {
        let mut worst_diff = (0usize, 0.0f32);
        let mut worst_cos = (0usize, 1.0f64);
        let (mut top1_differs, mut clear_top1_differs) = (0, 0);
        let mut compared = 0;
        run(from, chunk, &mut |p, row| {
            compared += 1;
            let (cos, diff) = (cosine(&row, &whole[p]), max_abs_diff(&row, &whole[p]));
            if diff > worst_diff.1 {
                worst_diff = (p, diff);
            }
            if cos < worst_cos.1 {
                worst_cos = (p, cos);
            }
            let top2 = top_k(&whole[p], 2);
            if top_k(&row, 1)[0] != top2[0] {
                top1_differs += 1;
                // A near-tie may flip; a clear winner may not.
                if whole[p][top2[0]] - whole[p][top2[1]] > 0.5 {
                    clear_top1_differs += 1;
                }
            }
        });
        assert_eq!(compared, N - from, "{how}: positions compared");
        eprintln!(
            "{how}: worst max |Δ| {:.5} at position {}, worst cosine {:.7} at {}; top-1 differs at {top1_differs} of {} positions",
            worst_diff.1,
            worst_diff.0,
            worst_cos.1,
            worst_cos.0,
            N - from
        );
        assert!(
            worst_diff.1 <= max_diff,
            "{how}: max |Δ| {:.4} at position {} against one chunk",
            worst_diff.1,
            worst_diff.0
        );
        assert!(
            worst_cos.1 >= min_cos,
            "{how}: cosine {:.7} at position {} against one chunk",
            worst_cos.1,
            worst_cos.0
        );
        assert_eq!(
            clear_top1_differs, 0,
            "{how}: top-1 differs where one chunk's top-2 margin is over 0.5"
        );
    }
}
