//! Qwen2.5-Coder-0.5B-Instruct Q4_K_M (`qwen2`: QKV bias, NEOX RoPE, separate LM head)
//! and Gemma-3-270M Q4_K_M (`gemma3`: QK-norm, post-norms, GeGLU, embedding scaling,
//! interleaved sliding-window layers, SentencePiece vocabulary) end to end: the
//! tokenizer gives llama.cpp's ids, and the logits of the capital prompt (every
//! position) and of the chat prompt (last position) meet the references' tolerances.

use wisp_core::gguf::GgufFile;
use wisp_core::gpu::Variant;
use wisp_core::tokenizer::Tokenizer;
use wisp_tests::cpu_model::CpuModel;
use wisp_tests::gpu::{covering_variants, gpu};
use wisp_tests::model_path;
use wisp_tests::reference::{
    self, check_against_exact, check_against_llamacpp, cosine, engine_in_variant, llamacpp_is_fair,
    max_abs_diff,
};

struct Model {
    reference: &'static str,
    file: &'static str,
}

const QWEN2: Model = Model {
    reference: "qwen2.5-coder-0.5b-instruct-q4_k_m",
    file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
};
const GEMMA3: Model = Model {
    reference: "gemma-3-270m-q4_k_m",
    file: "gemma-3-270m-q4_k_m.gguf",
};

/// The tokenizer from the GGUF gives llama.cpp's ids for the capital prompt (with BOS
/// where the model adds one), the rendered chat prompt, and every tokenizer case; and
/// decoding gives the text back.
fn check_tokenizer(m: &Model) {
    let json = reference::json(m.reference);
    let bytes = std::fs::read(model_path(m.file)).expect("read model");
    let file = GgufFile::parse(&bytes).expect("parse model");
    let tok = Tokenizer::from_gguf(&file.metadata).expect("tokenizer");
    let mut cases = vec![
        (
            json["capital"]["text"].as_str().unwrap().to_string(),
            reference::ids(&json, "/capital/ids"),
        ),
        (
            json["chat"]["rendered"].as_str().unwrap().to_string(),
            reference::ids(&json, "/chat/ids"),
        ),
    ];
    cases.extend(reference::tokenizer_cases(&json));
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let got = tok.encode_prompt(text).expect("encode");
        if &got != expected {
            failures.push(format!("{text:?}: got {got:?}, llama.cpp {expected:?}"));
        }
        let bos = usize::from(tok.add_bos_token());
        let back = tok.decode(&got[bos..]).expect("decode");
        if &back != text {
            failures.push(format!("{text:?} decodes back as {back:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Capital prompt at every position and chat prompt at the last, in the given variants:
/// - at every position, within the activation type's tolerance of exact arithmetic (the
///   f64 CPU model, which `scripts/numpy_forward.py` reproduces independently);
/// - against llama.cpp at its tolerance wherever that is a fair test
///   ([`llamacpp_is_fair`]: llama.cpp quantizes activations to 8 bits in its products,
///   which at some positions leaves even exact arithmetic at or past its bound).
fn check_logits(m: &Model, variants: &[Variant]) {
    let gpu = gpu();
    let json = reference::json(m.reference);
    let refs = reference::logits(m.reference);
    let capital = reference::ids(&json, "/capital/ids");
    let chat = reference::ids(&json, "/chat/ids");
    let (shape, cap_llama) = &refs["capital.llamacpp_logits"];
    let vocab = shape[1];
    let bytes = std::fs::read(model_path(m.file)).expect("read model");
    let file = GgufFile::parse(&bytes).expect("parse model");
    let cpu = CpuModel::load(&file, &bytes);
    // (prompt position, exact logits, llama.cpp's logits)
    let mut cases: Vec<(String, Vec<f32>, &[f32])> = cpu
        .forward(&capital)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            (
                format!("capital pos {i}"),
                e,
                &cap_llama[i * vocab..(i + 1) * vocab],
            )
        })
        .collect();
    let chat_exact = cpu.forward(&chat).pop().expect("chat logits");
    cases.push((
        "chat last".into(),
        chat_exact,
        &refs["chat.llamacpp_logits_last"].1,
    ));
    drop(cpu);
    for (what, exact, llama) in &cases {
        eprintln!(
            "{} exact arithmetic vs llama.cpp, {what}: cosine {:.6}, max |Δ| {:.3}",
            m.reference,
            cosine(exact, llama),
            max_abs_diff(exact, llama)
        );
    }
    let mut failures = Vec::new();
    for &variant in variants {
        let mut e = engine_in_variant(gpu.clone(), &file, &bytes, variant, 256);
        let mut ours = pollster::block_on(e.prefill_logits(&capital)).expect("capital logits");
        assert_eq!(ours.len(), capital.len());
        e.reset();
        e.prefill(&chat).expect("chat prefill");
        ours.push(pollster::block_on(e.logits()).expect("chat logits"));
        for ((what, exact, llama), ours) in cases.iter().zip(&ours) {
            let what = format!("{} {variant} {what}", m.reference);
            eprintln!(
                "{what}: cosine to exact {:.7}, to llama.cpp {:.6}",
                cosine(ours, exact),
                cosine(ours, llama)
            );
            if let Err(msg) = check_against_exact(&what, variant.act, ours, exact) {
                failures.push(msg);
            }
            if llamacpp_is_fair(variant.act, exact, llama)
                && let Err(msg) = check_against_llamacpp(&what, ours, llama)
            {
                failures.push(msg);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn qwen2_tokenizer_gives_llamacpp_ids() {
    check_tokenizer(&QWEN2);
}

#[test]
fn gemma3_sentencepiece_tokenizer_gives_llamacpp_ids() {
    check_tokenizer(&GEMMA3);
}

// Each real model runs in variants that cover every value of every axis (activation
// type, reduction, tier): a variant costs a minute or two on lavapipe, mostly compiling
// its pipelines. Every combination of every kernel these models use is checked by
// `tests/kernels.rs`, and every option of their blocks by `tests/tiny_model.rs`.
#[test]
fn qwen2_logits_match_references() {
    check_logits(&QWEN2, &covering_variants(&gpu()));
}

#[test]
fn gemma3_logits_match_references() {
    check_logits(&GEMMA3, &covering_variants(&gpu()));
}
