//! The tensors of an architecture: each weight's Hugging Face name, its GGUF name (as
//! llama.cpp's converter writes it), its shape, and whether its rows are RoPE-permuted.

use super::HfConfig;

/// One weight the model must have.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedTensor {
    pub hf_name: String,
    pub gguf_name: String,
    /// The shape as Hugging Face stores it, outermost first: `[rows, cols]` for a matrix.
    /// GGUF lists the same dimensions innermost first.
    pub shape: Vec<u64>,
    /// For llama's query and key projections: the number of heads whose rows are
    /// re-ordered between half-split (HF) and pair-wise (GGUF) RoPE.
    pub rope_heads: Option<u32>,
    /// The matrix that makes the logits: `output.weight`, or the embedding when tied.
    pub lm_head: bool,
}

impl ExpectedTensor {
    /// The dimensions in GGUF order (`dims[0]` is the row length).
    pub fn gguf_dims(&self) -> Vec<u64> {
        self.shape.iter().rev().copied().collect()
    }

    /// A matrix (quantizable), as opposed to a norm or a bias vector (kept in f32).
    pub fn is_matrix(&self) -> bool {
        self.shape.len() == 2
    }
}

/// Per-layer weights: the name after `model.layers.N.` and after `blk.N.`.
const LAYER_NAMES: [(&str, &str); 9] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// The query, key and value biases of architectures that have them.
const BIAS_NAMES: [(&str, &str); 3] = [
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
];

/// Every weight of the model `cfg` describes, in the order llama.cpp writes them.
pub fn expected_tensors(cfg: &HfConfig) -> Vec<ExpectedTensor> {
    let (d, ff, v) = (cfg.n_embd as u64, cfg.n_ff as u64, cfg.vocab_size as u64);
    let q = (cfg.n_head * cfg.head_dim) as u64;
    let kv = (cfg.n_kv_head * cfg.head_dim) as u64;
    let permuted = |heads: u32| cfg.arch.permutes_qk().then_some(heads);
    let tensor =
        |hf: String, gguf: String, shape: &[u64], rope_heads: Option<u32>| ExpectedTensor {
            lm_head: gguf == "output.weight"
                || (cfg.tied_embeddings && gguf == "token_embd.weight"),
            hf_name: hf,
            gguf_name: gguf,
            shape: shape.to_vec(),
            rope_heads,
        };
    let mut out = vec![tensor(
        "model.embed_tokens.weight".into(),
        "token_embd.weight".into(),
        &[v, d],
        None,
    )];
    for i in 0..cfg.n_layer {
        let names = LAYER_NAMES.iter().chain(if cfg.arch.qkv_bias() {
            &BIAS_NAMES[..]
        } else {
            &[]
        });
        for &(hf, gguf) in names {
            let (shape, rope_heads): (&[u64], _) = match hf {
                "input_layernorm.weight" | "post_attention_layernorm.weight" => (&[d], None),
                "self_attn.q_proj.weight" => (&[q, d], permuted(cfg.n_head)),
                "self_attn.k_proj.weight" => (&[kv, d], permuted(cfg.n_kv_head)),
                "self_attn.v_proj.weight" => (&[kv, d], None),
                "self_attn.o_proj.weight" => (&[d, q], None),
                "mlp.gate_proj.weight" | "mlp.up_proj.weight" => (&[ff, d], None),
                "mlp.down_proj.weight" => (&[d, ff], None),
                "self_attn.q_proj.bias" => (&[q], permuted(cfg.n_head)),
                "self_attn.k_proj.bias" => (&[kv], permuted(cfg.n_kv_head)),
                _ => (&[kv], None),
            };
            out.push(tensor(
                format!("model.layers.{i}.{hf}"),
                format!("blk.{i}.{gguf}"),
                shape,
                rope_heads,
            ));
        }
    }
    out.push(tensor(
        "model.norm.weight".into(),
        "output_norm.weight".into(),
        &[d],
        None,
    ));
    if !cfg.tied_embeddings {
        out.push(tensor(
            "lm_head.weight".into(),
            "output.weight".into(),
            &[v, d],
            None,
        ));
    }
    out
}

/// Tensors a checkpoint may hold that are not weights: old llama checkpoints saved RoPE's
/// computed inverse frequencies, and tied models may still store the LM head (a copy of
/// the embedding that `transformers` ignores).
pub(super) fn is_ignored(hf_name: &str, cfg: &HfConfig) -> bool {
    hf_name.ends_with(".rotary_emb.inv_freq")
        || (cfg.tied_embeddings && hf_name == "lm_head.weight")
}
