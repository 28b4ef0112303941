//! Tiny models with random weights, written as GGUF in memory: every shape odd enough to
//! catch indexing mistakes, every weight format the GPU reads, every architecture's
//! options (qwen2's QKV bias and NEOX RoPE; gemma3's QK-norm, post-norms, GeGLU,
//! embedding scaling and interleaved windows with their own RoPE base).

use std::sync::Arc;

use wisp_core::engine::{Engine, EngineOptions};
use wisp_core::gguf::{GgufFile, GgufWriter, Metadata, Value};
use wisp_core::gpu::Gpu;
use wisp_core::model::FileBytes;
use wisp_core::quant::GgmlType;
use wisp_core::tokenizer::Tokenizer;

use crate::kernel_harness::random;

/// The shape and formats of a tiny model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    /// `llama`, `qwen2` or `gemma3`.
    pub arch: &'static str,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_kv_head: u32,
    pub vocab: u32,
    pub n_ctx: u32,
    pub tied: bool,
    /// Format of the projections, per layer in turn.
    pub types: Vec<GgmlType>,
    pub embd_type: GgmlType,
    /// `llama.attention.sliding_window`, when set.
    pub window: Option<u32>,
    /// (experts, experts used per token): a mixture of experts in place of every
    /// layer's feed-forward network.
    pub experts: Option<(u32, u32)>,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            arch: "llama",
            n_layer: 3,
            n_embd: 96,
            n_ff: 160,
            n_head: 6,
            n_kv_head: 2,
            vocab: 301,
            n_ctx: 128,
            tied: true,
            types: vec![GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_0],
            embd_type: GgmlType::Q8_0,
            window: None,
            experts: None,
        }
    }
}

/// A writer holding the model, so tests can break one key or tensor before writing.
pub fn tiny_writer(s: &TinySpec) -> GgufWriter {
    let mut w = GgufWriter::new();
    let gemma = s.arch == "gemma3";
    // Gemma's heads are wider than n_embd / n_head (its key_length is set).
    let hd = if gemma { 32 } else { s.n_embd / s.n_head };
    let a = s.arch;
    let meta: [(String, Value); 10] = [
        ("general.architecture".into(), a.into()),
        (format!("{a}.block_count"), s.n_layer.into()),
        (format!("{a}.embedding_length"), s.n_embd.into()),
        (format!("{a}.feed_forward_length"), s.n_ff.into()),
        (format!("{a}.attention.head_count"), s.n_head.into()),
        (format!("{a}.attention.head_count_kv"), s.n_kv_head.into()),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            1e-5f32.into(),
        ),
        // Gemma's windowed layers use 10000 instead: two RoPE tables.
        (
            format!("{a}.rope.freq_base"),
            (if gemma { 1e6f32 } else { 1e4 }).into(),
        ),
        (format!("{a}.context_length"), s.n_ctx.into()),
        (format!("{a}.vocab_size"), s.vocab.into()),
    ];
    for (k, v) in meta {
        w.metadata(k, v).expect("metadata");
    }
    if gemma {
        w.metadata("gemma3.attention.key_length", hd)
            .expect("metadata");
        w.metadata("gemma3.attention.value_length", hd)
            .expect("metadata");
        // Windowed, global, windowed, ...
        w.metadata("gemma3.attention.sliding_window_pattern", 2u32)
            .expect("metadata");
    }
    if let Some(window) = s.window {
        w.metadata(format!("{a}.attention.sliding_window"), window)
            .expect("metadata");
    }
    if let Some((n_expert, n_used)) = s.experts {
        w.metadata(format!("{a}.expert_count"), n_expert)
            .expect("metadata");
        w.metadata(format!("{a}.expert_used_count"), n_used)
            .expect("metadata");
    }
    let (d, ff, q, kv) = (
        s.n_embd as u64,
        s.n_ff as u64,
        (s.n_head * hd) as u64,
        (s.n_kv_head * hd) as u64,
    );
    let mut seed = 100;
    let mut put = |w: &mut GgufWriter, name: &str, dims: &[u64], ty: GgmlType, scale: f32| {
        seed += 1;
        let n: u64 = dims.iter().product();
        let values = random(seed, n as usize, scale);
        w.tensor_from_f32(name, dims, ty, &values).expect("tensor");
    };
    put(
        &mut w,
        "token_embd.weight",
        &[d, s.vocab as u64],
        s.embd_type,
        1.0,
    );
    if !s.tied {
        put(
            &mut w,
            "output.weight",
            &[d, s.vocab as u64],
            GgmlType::Q4_0,
            0.3,
        );
    }
    put(&mut w, "output_norm.weight", &[d], GgmlType::F32, 1.0);
    // Scales keep activations in a realistic range through the random layers.
    let ws = 1.0 / (d as f32).sqrt();
    for i in 0..s.n_layer {
        let ty = s.types[i as usize % s.types.len()];
        let b = |n: &str| format!("blk.{i}.{n}.weight");
        put(&mut w, &b("attn_norm"), &[d], GgmlType::F32, 1.0);
        put(&mut w, &b("attn_q"), &[d, q], ty, 2.0 * ws);
        put(&mut w, &b("attn_k"), &[d, kv], ty, 2.0 * ws);
        // A different format for V makes the fused QKV fall back to separate matrices.
        put(
            &mut w,
            &b("attn_v"),
            &[d, kv],
            if i == 1 { GgmlType::F16 } else { ty },
            2.0 * ws,
        );
        put(&mut w, &b("attn_output"), &[q, d], ty, ws);
        if s.arch == "qwen2" {
            for (p, n) in [("q", q), ("k", kv), ("v", kv)] {
                put(
                    &mut w,
                    &format!("blk.{i}.attn_{p}.bias"),
                    &[n],
                    GgmlType::F32,
                    0.5,
                );
            }
        }
        if gemma {
            put(&mut w, &b("attn_q_norm"), &[hd as u64], GgmlType::F32, 1.0);
            put(&mut w, &b("attn_k_norm"), &[hd as u64], GgmlType::F32, 1.0);
            put(&mut w, &b("post_attention_norm"), &[d], GgmlType::F32, 1.0);
            put(&mut w, &b("post_ffw_norm"), &[d], GgmlType::F32, 1.0);
        }
        put(&mut w, &b("ffn_norm"), &[d], GgmlType::F32, 1.0);
        match s.experts {
            None => {
                put(&mut w, &b("ffn_gate"), &[d, ff], ty, 2.0 * ws);
                put(&mut w, &b("ffn_up"), &[d, ff], ty, 2.0 * ws);
                put(
                    &mut w,
                    &b("ffn_down"),
                    &[ff, d],
                    ty,
                    1.0 / (ff as f32).sqrt(),
                );
            }
            Some((n_expert, _)) => {
                let e = n_expert as u64;
                // A router strong enough that tokens disagree on their experts.
                put(&mut w, &b("ffn_gate_inp"), &[d, e], GgmlType::F16, 4.0 * ws);
                put(&mut w, &b("ffn_gate_exps"), &[d, ff, e], ty, 2.0 * ws);
                put(&mut w, &b("ffn_up_exps"), &[d, ff, e], ty, 2.0 * ws);
                put(
                    &mut w,
                    &b("ffn_down_exps"),
                    &[ff, d, e],
                    ty,
                    1.0 / (ff as f32).sqrt(),
                );
            }
        }
    }
    w
}

/// The model as GGUF bytes.
pub fn tiny_model(s: &TinySpec) -> Vec<u8> {
    tiny_writer(s).to_bytes()
}

/// A tiny model loaded on `gpu`.
pub fn tiny_engine(gpu: Arc<Gpu>, bytes: &[u8], options: &EngineOptions) -> Engine {
    let file = GgufFile::parse(bytes).expect("a tiny model parses");
    let source = FileBytes { file: &file, bytes };
    pollster::block_on(Engine::load(gpu, &file, &source, options)).expect("load")
}

/// A byte-level tokenizer for a tiny model's `vocab` ids: id `i` is the text `t{i} `, and
/// the last id is the end of generation. (Tiny models' outputs are ids; this only gives
/// them text.)
pub fn tiny_tokenizer(vocab: u32) -> Tokenizer {
    let tokens: Vec<String> = (0..vocab).map(|i| format!("t{i} ")).collect();
    let mut meta = Metadata::new();
    meta.insert("tokenizer.ggml.model", "gpt2".into());
    meta.insert("tokenizer.ggml.pre", "gpt2".into());
    meta.insert(
        "tokenizer.ggml.tokens",
        Value::string_array(tokens.iter().map(String::as_str)),
    );
    meta.insert(
        "tokenizer.ggml.merges",
        Value::string_array(std::iter::empty::<&str>()),
    );
    meta.insert("tokenizer.ggml.eos_token_id", (vocab - 1).into());
    Tokenizer::from_gguf(&meta).expect("tokenizer")
}
