//! A 2k-token text through SmolLM2 three ways — one step for the whole text, steps of
//! 100 tokens, and one token per step — must give the same logits at every position.

use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::KvType;
use wisp_core::model::FileBytes;
use wisp_core::tokenizer::Tokenizer;
use wisp_tests::gpu::gpu;
use wisp_tests::model_path;
use wisp_tests::reference::{cosine, max_abs_diff, top_k};

const N: usize = 2048;

#[test]
fn one_chunk_chunks_of_100_and_token_by_token_agree_over_2k_tokens() {
    let bytes = std::fs::read(model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).expect("read model");
    let file = GgufFile::parse(&bytes).expect("parse");
    let tokenizer = Tokenizer::from_gguf(&file.metadata).expect("tokenizer");
    let fixture = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ppl.txt")).expect("fixture");
    let mut ids = Vec::new();
    while ids.len() < N {
        ids.extend(tokenizer.encode(&fixture, false).expect("encode"));
    }
    ids.truncate(N);
    let run = |max_batch: u32, each: &mut dyn FnMut(usize, Vec<f32>)| {
        // f32 keys and values: the three ways then differ only in summation order.
        let options = EngineOptions { n_ctx: N as u32, max_batch, max_rows: max_batch.min(32), kv_type: Some(KvType::F32), ..Default::default() };
        let mut e = pollster::block_on(Engine::load(gpu(), &file, &FileBytes { file: &file, bytes: &bytes }, &options)).expect("load");
        pollster::block_on(e.prefill_logits_with(&ids, &mut *each)).expect("prefill");
    };
    let mut whole: Vec<Vec<f32>> = Vec::with_capacity(N);
    run(N as u32, &mut |_, row| whole.push(row));
    assert_eq!(whole.len(), N);
    for (how, max_batch) in [("chunks of 100", 100u32), ("token by token", 1)] {
        let mut worst = (0usize, 1.0f64, 0.0f32);
        let mut top1_differs = 0;
        run(max_batch, &mut |p, row| {
            let (cos, diff) = (cosine(&row, &whole[p]), max_abs_diff(&row, &whole[p]));
            if diff > worst.2 {
                worst = (p, cos, diff);
            }
            if top_k(&row, 1) != top_k(&whole[p], 1) {
                top1_differs += 1;
            }
        });
        // The f32-reference tolerance: only the order of sums differs between the ways.
        assert!(
            worst.2 <= 0.05 && worst.1 >= 0.99999,
            "{how}: at position {} cosine {:.7}, max |Δ| {:.4} against one chunk",
            worst.0,
            worst.1,
            worst.2
        );
        eprintln!("{how}: worst max |Δ| {:.5} at position {}; top-1 differs at {top1_differs} of {N} positions", worst.2, worst.0);
    }
}
