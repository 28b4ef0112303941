//! SmolLM2-135M-Instruct Q4_1 end to end: logits for the capital and chat prompts against
//! the f32 reference and llama.cpp, in every kernel variant the adapter runs.

use std::sync::Arc;

use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::GgufFile;
use wisp_core::gpu::{Gpu, KvType, Variant};
use wisp_core::model::FileBytes;
use wisp_tests::cpu_model::CpuModel;
use wisp_tests::gpu::{gpu, variants};
use wisp_tests::model_path;
use wisp_tests::reference::{
    self, check_against_exact, check_against_llamacpp, cosine, max_abs_diff, top_k,
};

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const REF: &str = "smollm2-135m-instruct-q4_1";

fn engine(gpu: Arc<Gpu>, variant: Variant) -> Engine {
    let bytes = std::fs::read(model_path(MODEL)).expect("read model");
    let file = GgufFile::parse(&bytes).expect("parse model");
    reference::engine_in_variant(gpu, &file, &bytes, variant, 256)
}

#[test]
fn smollm2_logits_match_references_in_every_variant() {
    let gpu = gpu();
    let json = reference::json(REF);
    let refs = reference::logits(REF);
    let capital = reference::ids(&json, "/capital/ids");
    let chat = reference::ids(&json, "/chat/ids");
    let (cap_shape, cap_llama) = &refs["capital.llamacpp_logits"];
    let vocab = cap_shape[1];
    // Exact arithmetic at every position of the capital prompt, from the CPU reference.
    let bytes = std::fs::read(model_path(MODEL)).expect("read model");
    let exact = CpuModel::load(&GgufFile::parse(&bytes).unwrap(), &bytes).forward(&capital);
    // llama.cpp quantizes activations to 8 bits in its matrix products and keeps the KV
    // cache in f16. At some positions that alone moves its logits further from exact
    // arithmetic than its own tolerance (the CPU reference in f64, independent of the
    // GPU path, misses cosine 0.999 at positions 2 and 3 of this prompt; an independent
    // numpy forward gives the same figures). Where exact arithmetic itself misses the
    // llama.cpp tolerance, we require the stricter thing instead: our logits must match
    // exact arithmetic at the f32-reference tolerance of the variant.
    let exact_meets_llamacpp = reference::exact_meets_llamacpp(&exact, cap_llama, vocab);
    let mut failures = Vec::new();
    for variant in variants(&gpu) {
        let mut e = engine(gpu.clone(), variant);
        // Capital prompt: every position against llama.cpp, the last against f32ref.
        let per_pos = pollster::block_on(e.prefill_logits(&capital)).expect("capital logits");
        assert_eq!(per_pos.len(), capital.len());
        for (i, ours) in per_pos.iter().enumerate() {
            let result = if exact_meets_llamacpp[i] {
                check_against_llamacpp(
                    &format!("{variant} capital pos {i}"),
                    ours,
                    &cap_llama[i * vocab..(i + 1) * vocab],
                )
            } else {
                check_against_exact(
                    &format!("{variant} capital pos {i} (exact reference)"),
                    variant.act,
                    ours,
                    &exact[i],
                )
            };
            if let Err(m) = result {
                failures.push(m);
            }
        }
        let last = per_pos.last().unwrap();
        if let Err(m) = check_against_exact(
            &format!("{variant} capital"),
            variant.act,
            last,
            &refs["capital.f32ref_logits_last"].1,
        ) {
            failures.push(m);
        }
        // Chat prompt through the generation path (prefill + last-position head).
        e.reset();
        e.prefill(&chat).expect("chat prefill");
        let ours = pollster::block_on(e.logits()).expect("chat logits");
        if let Err(m) = check_against_llamacpp(
            &format!("{variant} chat"),
            &ours,
            &refs["chat.llamacpp_logits_last"].1,
        ) {
            failures.push(m);
        }
        if let Err(m) = check_against_exact(
            &format!("{variant} chat"),
            variant.act,
            &ours,
            &refs["chat.f32ref_logits_last"].1,
        ) {
            failures.push(m);
        }
        eprintln!("{variant}: checked");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A Q8_0 KV cache against an f16 one, on the chat prompt (37 tokens). Stated tolerance:
/// cosine >= 0.999 and max |Δ| <= 1.0 between the two, and the same top-1 token. (It is
/// a lossy cache: against llama.cpp, which keeps f16, its cosine is about 0.9989.)
#[test]
fn q8_0_kv_cache_stays_close_to_f16() {
    let gpu = gpu();
    let json = reference::json(REF);
    let chat = reference::ids(&json, "/chat/ids");
    let bytes = std::fs::read(model_path(MODEL)).expect("read model");
    let file = GgufFile::parse(&bytes).expect("parse model");
    let logits = |kv: KvType| {
        let options = EngineOptions {
            n_ctx: 256,
            kv_type: Some(kv),
            ..Default::default()
        };
        let mut e = pollster::block_on(Engine::load(
            gpu.clone(),
            &file,
            &FileBytes {
                file: &file,
                bytes: &bytes,
            },
            &options,
        ))
        .expect("load");
        e.prefill(&chat).expect("prefill");
        pollster::block_on(e.logits()).expect("logits")
    };
    let (f16, q8) = (logits(KvType::F16), logits(KvType::Q8_0));
    let (cos, diff) = (cosine(&q8, &f16), max_abs_diff(&q8, &f16));
    eprintln!("q8_0 KV against f16 KV: cosine {cos:.6}, max |Δ| {diff:.4}");
    assert!(
        cos >= 0.999 && diff <= 1.0,
        "q8_0 KV: cosine {cos:.6}, max |Δ| {diff:.4}"
    );
    assert_eq!(top_k(&q8, 1), top_k(&f16, 1));
}
