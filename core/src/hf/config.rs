//! `config.json` ⇄ GGUF metadata: the hyperparameters of a llama or qwen2 model, read
//! from either side and written to either side.

use serde_json::{Map, Value as Json, json};

use super::HfError;
use crate::gguf::{GgufFile, Metadata, Value};

const CONFIG: &str = "config.json";

/// The architectures Wisp converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
}

impl Architecture {
    /// `general.architecture` and the prefix of the GGUF keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// `model_type` in `config.json`.
    fn model_type(self) -> &'static str {
        self.gguf_name()
    }

    /// The `transformers` class, for `architectures` in `config.json`.
    fn class_name(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    fn from_name(name: &str) -> Option<Architecture> {
        [Architecture::Llama, Architecture::Qwen2]
            .into_iter()
            .find(|a| a.model_type() == name || a.class_name() == name)
    }

    /// Whether the query and key rows are stored for half-split RoPE in Hugging Face and
    /// for pair-wise RoPE in GGUF (llama.cpp permutes llama, not qwen2).
    pub fn permutes_qk(self) -> bool {
        self == Architecture::Llama
    }

    /// Whether the query, key and value projections have biases (Qwen2 always does).
    pub fn qkv_bias(self) -> bool {
        self == Architecture::Qwen2
    }
}

/// The hyperparameters of a model, as both formats spell them.
#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    pub arch: Architecture,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_kv_head: u32,
    pub head_dim: u32,
    pub vocab_size: u32,
    pub n_ctx: u32,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// `rope_scaling` of type linear: positions are divided by this factor.
    pub rope_linear_factor: Option<f32>,
    pub sliding_window: Option<u32>,
    pub tied_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

/// Typed access to the keys of one JSON object, with errors that name the file and key.
struct Keys<'a> {
    file: &'a str,
    map: &'a Map<String, Json>,
}

impl Keys<'_> {
    fn u32(&self, key: &str) -> Result<Option<u32>, HfError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    HfError::bad_key(
                        self.file,
                        key,
                        format!("{v} is not a whole number below 2^32"),
                    )
                }),
        }
    }

    fn require_u32(&self, key: &str) -> Result<u32, HfError> {
        let v = self.u32(key)?.ok_or_else(|| HfError::MissingKey {
            file: self.file.into(),
            key: key.into(),
        })?;
        if v == 0 {
            return Err(HfError::bad_key(self.file, key, "must not be 0"));
        }
        Ok(v)
    }

    fn f32(&self, key: &str) -> Result<Option<f32>, HfError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| HfError::bad_key(self.file, key, format!("{v} is not a number"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, HfError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                HfError::bad_key(self.file, key, format!("{v} is not true or false"))
            }),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&str>, HfError> {
        match self.map.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| HfError::bad_key(self.file, key, format!("{v} is not a string"))),
        }
    }

    /// A token id that may be given as a list (generation configs list several EOS ids):
    /// the first one.
    fn token_id(&self, key: &str) -> Result<Option<u32>, HfError> {
        match self.map.get(key) {
            Some(Json::Array(list)) => match list.first() {
                None => Ok(None),
                Some(first) => first
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| {
                        HfError::bad_key(self.file, key, format!("{first} is not a token id"))
                    }),
            },
            _ => self.u32(key),
        }
    }
}

/// Head counts and sizes that fit together; `names` are the keys as the file at fault
/// spells them (heads, kv heads, width).
fn check_heads(
    file: &str,
    names: [&str; 3],
    n_head: u32,
    n_kv_head: u32,
    n_embd: u32,
    head_dim: Option<u32>,
) -> Result<u32, HfError> {
    let [heads, kv_heads, width] = names;
    if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
        return Err(HfError::bad_key(
            file,
            kv_heads,
            format!("{n_kv_head} does not divide {heads} = {n_head}"),
        ));
    }
    let d = match head_dim {
        Some(d) => d,
        None if n_embd.is_multiple_of(n_head) => n_embd / n_head,
        None => {
            return Err(HfError::bad_key(
                file,
                heads,
                format!("{n_head} does not divide {width} = {n_embd}"),
            ));
        }
    };
    // RoPE rotates pairs of dimensions.
    if d == 0 || !d.is_multiple_of(2) {
        return Err(HfError::bad_key(
            file,
            "head_dim",
            format!("{d} is not a positive even number"),
        ));
    }
    Ok(d)
}

/// A f32 as the shortest decimal that reads back as it (1e-5, not 9.999999747378752e-6).
fn json_f32(x: f32) -> Json {
    x.to_string().parse::<f64>().map_or(Json::Null, Json::from)
}

/// The top-level object of `config.json`.
fn json_object(bytes: &[u8]) -> Result<Map<String, Json>, HfError> {
    let root: Json = serde_json::from_slice(bytes).map_err(|e| HfError::BadJson {
        file: CONFIG.into(),
        reason: e.to_string(),
    })?;
    match root {
        Json::Object(map) => Ok(map),
        _ => Err(HfError::BadJson {
            file: CONFIG.into(),
            reason: "not a JSON object".into(),
        }),
    }
}

/// `model_type`, else the first of `architectures`.
fn json_architecture(k: &Keys<'_>) -> Result<Architecture, HfError> {
    let class = k
        .map
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Json::as_str);
    let arch_name = k
        .str("model_type")?
        .or(class)
        .ok_or_else(|| HfError::MissingKey {
            file: CONFIG.into(),
            key: "model_type".into(),
        })?;
    Architecture::from_name(arch_name)
        .ok_or_else(|| HfError::UnsupportedArchitecture(arch_name.to_string()))
}

/// Refuses an activation other than silu, and biases in a llama model.
fn refuse_unsupported_options(k: &Keys<'_>, arch: Architecture) -> Result<(), HfError> {
    if let Some(act) = k.str("hidden_act")?
        && act != "silu"
    {
        return Err(HfError::bad_key(
            CONFIG,
            "hidden_act",
            format!("{act:?} is not supported (Wisp runs silu)"),
        ));
    }
    for key in ["attention_bias", "mlp_bias"] {
        if arch == Architecture::Llama && k.bool(key)? == Some(true) {
            return Err(HfError::bad_key(
                CONFIG,
                key,
                "llama models with biases are not supported",
            ));
        }
    }
    Ok(())
}

/// A llama model's window (`0` means none); a qwen2 model must not use its own.
fn json_sliding_window(k: &Keys<'_>, arch: Architecture) -> Result<Option<u32>, HfError> {
    match arch {
        Architecture::Llama => Ok(k.u32("sliding_window")?.filter(|&w| w > 0)),
        // Qwen2 applies its window only to some layers (max_window_layers).
        Architecture::Qwen2 if k.bool("use_sliding_window")? == Some(true) => {
            Err(HfError::bad_key(
                CONFIG,
                "use_sliding_window",
                "qwen2's per-layer sliding window is not supported",
            ))
        }
        Architecture::Qwen2 => Ok(None),
    }
}

/// `rms_norm_eps`, 1e-6 when absent; it must lie in (0, 1).
fn json_rms_eps(k: &Keys<'_>) -> Result<f32, HfError> {
    let rms_eps = k.f32("rms_norm_eps")?.unwrap_or(1e-6);
    if !(rms_eps > 0.0 && rms_eps < 1.0) {
        return Err(HfError::bad_key(
            CONFIG,
            "rms_norm_eps",
            format!("{rms_eps} is out of range"),
        ));
    }
    Ok(rms_eps)
}

/// `rope_theta`, 10000 when absent; it must be positive.
fn json_rope_theta(k: &Keys<'_>) -> Result<f32, HfError> {
    let rope_theta = k.f32("rope_theta")?.unwrap_or(10000.0);
    if rope_theta <= 0.0 {
        return Err(HfError::bad_key(
            CONFIG,
            "rope_theta",
            format!("{rope_theta} must be positive"),
        ));
    }
    Ok(rope_theta)
}

const GGUF_METADATA: &str = "GGUF metadata";

/// Typed access to a model's `{arch}.*` GGUF keys, with errors that name the full key.
struct GgufKeys<'a> {
    arch_name: &'a str,
    md: &'a Metadata,
}

impl GgufKeys<'_> {
    /// The full key of `name`: `{arch}.{name}`.
    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.arch_name)
    }

    fn u32(&self, name: &str) -> Result<Option<u32>, HfError> {
        let k = self.key(name);
        self.md
            .opt_u64(&k)?
            .map(|v| {
                u32::try_from(v)
                    .map_err(|_| HfError::bad_key(GGUF_METADATA, &k, format!("{v} is too large")))
            })
            .transpose()
    }

    fn require_u32(&self, name: &str) -> Result<u32, HfError> {
        self.u32(name)?.ok_or_else(|| HfError::MissingKey {
            file: GGUF_METADATA.into(),
            key: self.key(name),
        })
    }

    /// `rope.scaling.type` and `rope.scaling.factor`: a linear factor other than 1, or none.
    fn rope_linear_factor(&self) -> Result<Option<f32>, HfError> {
        match self.md.opt_str(&self.key("rope.scaling.type"))? {
            None | Some("none") => Ok(None),
            Some("linear") => Ok(self
                .md
                .opt_f64(&self.key("rope.scaling.factor"))?
                .map(|f| f as f32)
                .filter(|&f| f != 1.0)),
            Some(other) => Err(HfError::bad_key(
                GGUF_METADATA,
                &self.key("rope.scaling.type"),
                format!("{other:?} is not supported"),
            )),
        }
    }
}

impl HfConfig {
    /// Reads `config.json`, refusing architectures and options Wisp cannot run and values
    /// that do not fit together.
    pub fn from_json(bytes: &[u8]) -> Result<HfConfig, HfError> {
        let map = json_object(bytes)?;
        let k = Keys {
            file: CONFIG,
            map: &map,
        };
        let arch = json_architecture(&k)?;
        refuse_unsupported_options(&k, arch)?;
        let n_embd = k.require_u32("hidden_size")?;
        let n_head = k.require_u32("num_attention_heads")?;
        let n_kv_head = k.u32("num_key_value_heads")?.unwrap_or(n_head);
        let head_dim = check_heads(
            CONFIG,
            ["num_attention_heads", "num_key_value_heads", "hidden_size"],
            n_head,
            n_kv_head,
            n_embd,
            k.u32("head_dim")?,
        )?;
        let rope_linear_factor = rope_scaling(map.get("rope_scaling"))?;
        let sliding_window = json_sliding_window(&k, arch)?;
        let rms_eps = json_rms_eps(&k)?;
        let rope_theta = json_rope_theta(&k)?;
        Ok(HfConfig {
            arch,
            n_layer: k.require_u32("num_hidden_layers")?,
            n_embd,
            n_ff: k.require_u32("intermediate_size")?,
            n_head,
            n_kv_head,
            head_dim,
            vocab_size: k.require_u32("vocab_size")?,
            n_ctx: k.require_u32("max_position_embeddings")?,
            rope_theta,
            rms_eps,
            rope_linear_factor,
            sliding_window,
            tied_embeddings: k.bool("tie_word_embeddings")?.unwrap_or(false),
            bos_token_id: k.token_id("bos_token_id")?,
            eos_token_id: k.token_id("eos_token_id")?,
        })
    }

    /// `config.json` for this model; `torch_dtype` names the tensors' type
    /// (`float32`, `float16`, `bfloat16`).
    pub fn to_json(&self, torch_dtype: &str) -> Json {
        let mut c = json!({
            "architectures": [self.arch.class_name()],
            "model_type": self.arch.model_type(),
            "hidden_size": self.n_embd,
            "intermediate_size": self.n_ff,
            "num_hidden_layers": self.n_layer,
            "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_kv_head,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.n_ctx,
            "rope_theta": json_f32(self.rope_theta),
            "rms_norm_eps": json_f32(self.rms_eps),
            "rope_scaling": self.rope_linear_factor.map(|f| json!({"rope_type": "linear", "factor": json_f32(f)})),
            "tie_word_embeddings": self.tied_embeddings,
            "hidden_act": "silu",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": torch_dtype,
            "use_cache": true,
        });
        let obj = c.as_object_mut().expect("an object");
        match self.arch {
            Architecture::Llama => {
                obj.insert("attention_bias".into(), false.into());
                obj.insert("mlp_bias".into(), false.into());
                obj.insert("sliding_window".into(), self.sliding_window.into());
            }
            Architecture::Qwen2 => {
                obj.insert("use_sliding_window".into(), false.into());
            }
        }
        c
    }

    /// Reads the hyperparameters of a GGUF model (its `{arch}.*` keys; tied embeddings when
    /// it has no `output.weight`).
    pub fn from_gguf(file: &GgufFile) -> Result<HfConfig, HfError> {
        let arch_name = file.architecture()?;
        let arch = Architecture::from_name(arch_name)
            .ok_or_else(|| HfError::UnsupportedArchitecture(arch_name.to_string()))?;
        let md = &file.metadata;
        let k = GgufKeys { arch_name, md };
        let n_embd = k.require_u32("embedding_length")?;
        let n_head = k.require_u32("attention.head_count")?;
        let n_kv_head = k.u32("attention.head_count_kv")?.unwrap_or(n_head);
        let names = [
            k.key("attention.head_count"),
            k.key("attention.head_count_kv"),
            k.key("embedding_length"),
        ];
        let head_dim = check_heads(
            GGUF_METADATA,
            [&names[0], &names[1], &names[2]],
            n_head,
            n_kv_head,
            n_embd,
            k.u32("attention.key_length")?,
        )?;
        let vocab_size = match k.u32("vocab_size")? {
            Some(v) => v,
            None => file
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1))
                .map(|&v| v as u32)
                .ok_or_else(|| HfError::MissingTensor("token_embd.weight".into()))?,
        };
        let rope_linear_factor = k.rope_linear_factor()?;
        let token_id = |key: &str| -> Result<Option<u32>, HfError> {
            Ok(md.opt_u64(key)?.and_then(|v| u32::try_from(v).ok()))
        };
        Ok(HfConfig {
            arch,
            n_layer: k.require_u32("block_count")?,
            n_embd,
            n_ff: k.require_u32("feed_forward_length")?,
            n_head,
            n_kv_head,
            head_dim,
            vocab_size,
            n_ctx: k.require_u32("context_length")?,
            rope_theta: md.opt_f64(&k.key("rope.freq_base"))?.unwrap_or(10000.0) as f32,
            rms_eps: md.require_f64(&k.key("attention.layer_norm_rms_epsilon"))? as f32,
            rope_linear_factor,
            sliding_window: k.u32("attention.sliding_window")?.filter(|&w| w > 0),
            tied_embeddings: file.tensor("output.weight").is_none(),
            bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: token_id("tokenizer.ggml.eos_token_id")?,
        })
    }

    /// The GGUF metadata keys of the model (llama.cpp's names), tokenizer keys excepted.
    pub fn gguf_metadata(&self) -> Vec<(String, Value)> {
        let a = self.arch.gguf_name();
        let k = |name: &str| format!("{a}.{name}");
        let mut md: Vec<(String, Value)> = vec![
            ("general.architecture".into(), a.into()),
            (k("block_count"), self.n_layer.into()),
            (k("context_length"), self.n_ctx.into()),
            (k("embedding_length"), self.n_embd.into()),
            (k("feed_forward_length"), self.n_ff.into()),
            (k("attention.head_count"), self.n_head.into()),
            (k("attention.head_count_kv"), self.n_kv_head.into()),
            (k("rope.freq_base"), self.rope_theta.into()),
            (k("attention.layer_norm_rms_epsilon"), self.rms_eps.into()),
            (k("vocab_size"), self.vocab_size.into()),
            (k("rope.dimension_count"), self.head_dim.into()),
        ];
        if self.head_dim * self.n_head != self.n_embd {
            md.push((k("attention.key_length"), self.head_dim.into()));
            md.push((k("attention.value_length"), self.head_dim.into()));
        }
        if let Some(f) = self.rope_linear_factor {
            md.push((k("rope.scaling.type"), "linear".into()));
            md.push((k("rope.scaling.factor"), f.into()));
        }
        if let Some(w) = self.sliding_window {
            md.push((k("attention.sliding_window"), w.into()));
        }
        md
    }
}

/// `rope_scaling`: absent or null, or linear with a factor; anything else (llama3, yarn,
/// dynamic) changes the frequencies in ways Wisp does not implement.
fn rope_scaling(v: Option<&Json>) -> Result<Option<f32>, HfError> {
    let Some(Json::Object(map)) = v else {
        return match v {
            None | Some(Json::Null) => Ok(None),
            Some(other) => Err(HfError::bad_key(
                CONFIG,
                "rope_scaling",
                format!("{other} is not an object"),
            )),
        };
    };
    let k = Keys { file: CONFIG, map };
    let kind = k.str("rope_type")?.or(k.str("type")?).unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "linear" => {
            let f = k.f32("factor")?.ok_or_else(|| HfError::MissingKey {
                file: CONFIG.into(),
                key: "rope_scaling.factor".into(),
            })?;
            if f <= 0.0 {
                return Err(HfError::bad_key(
                    CONFIG,
                    "rope_scaling.factor",
                    format!("{f} must be positive"),
                ));
            }
            Ok(Some(f).filter(|&f| f != 1.0))
        }
        other => Err(HfError::bad_key(
            CONFIG,
            "rope_scaling.rope_type",
            format!("{other:?} is not supported (Wisp runs linear scaling)"),
        )),
    }
}
