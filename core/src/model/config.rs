//! Hyperparameters of a model, from GGUF metadata, with the options of its
//! architecture (`arch.rs`).

use crate::gguf::GgufFile;

use super::{ArchOptions, ModelError, arch_options};

/// RoPE frequency scaling.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum RopeScaling {
    None,
    /// Positions divided by the factor (`rope.scaling.type = linear`).
    Linear(f32),
}

/// How the router's scores become expert probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ExpertGating {
    Softmax,
    Sigmoid,
}

/// A mixture-of-experts feed-forward network (Mixtral style): a router
/// (`ffn_gate_inp`) scores every expert per token, the `n_used` best run, and their
/// outputs are summed with the router's weights.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Experts {
    pub n_expert: u32,
    pub n_used: u32,
    pub gating: ExpertGating,
    /// The chosen experts' weights are divided by their sum.
    pub normalize: bool,
    /// Then multiplied by this.
    pub scale: f32,
}

/// Most experts a token may use (the routing kernel keeps them in registers).
pub const MAX_EXPERTS_USED: u32 = 16;

/// Everything the forward pass needs to know about the model's shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub architecture: String,
    /// The options of the transformer block for this architecture.
    pub arch: ArchOptions,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_kv_head: u32,
    pub head_dim: u32,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: u32,
    pub rope_freq_base: f32,
    pub rope_scaling: RopeScaling,
    pub rms_eps: f32,
    pub n_ctx_train: u32,
    pub vocab_size: u32,
    /// The LM head reuses the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// Windowed layers attend only to this many most recent positions.
    pub sliding_window: Option<u32>,
    /// Each layer's window (0: global attention). Mistral-style models window every
    /// layer; Gemma 3 interleaves windowed and global layers.
    pub layer_windows: Vec<u32>,
    /// RoPE base of the windowed layers, unscaled, where it differs from the global
    /// one (Gemma 3 uses a shorter one there).
    pub window_rope_base: Option<f32>,
    /// A mixture of experts in place of every layer's dense feed-forward network.
    pub experts: Option<Experts>,
}

fn u32_key(file: &GgufFile, key: &str) -> Result<u32, ModelError> {
    let v = file.metadata.require_u64(key)?;
    u32::try_from(v).map_err(|_| ModelError::InvalidConfig(format!("{key} = {v} is too large")))
}

fn opt_u32_key(file: &GgufFile, key: &str) -> Result<Option<u32>, ModelError> {
    match file.metadata.opt_u64(key)? {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| ModelError::InvalidConfig(format!("{key} = {v} is too large"))),
    }
}

/// `{arch}.expert_count` and its companions; `None` for a dense model.
fn experts(file: &GgufFile, k: &dyn Fn(&str) -> String) -> Result<Option<Experts>, ModelError> {
    let n_expert = opt_u32_key(file, &k("expert_count"))?.unwrap_or(0);
    if n_expert == 0 {
        return Ok(None);
    }
    let n_used = u32_key(file, &k("expert_used_count"))?;
    if n_used == 0 || n_used > n_expert || n_used > MAX_EXPERTS_USED {
        return Err(ModelError::InvalidConfig(format!(
            "{} = {n_used} must be between 1 and {} = {n_expert} (and at most {MAX_EXPERTS_USED})",
            k("expert_used_count"),
            k("expert_count")
        )));
    }
    // llama.cpp's numbering: 1 softmax, 2 sigmoid.
    let gating = match opt_u32_key(file, &k("expert_gating_func"))? {
        None | Some(1) => ExpertGating::Softmax,
        Some(2) => ExpertGating::Sigmoid,
        Some(other) => {
            return Err(ModelError::InvalidConfig(format!(
                "{} = {other} is not a known gating function",
                k("expert_gating_func")
            )));
        }
    };
    // Mixtral-style llama models renormalise the chosen experts' weights.
    let normalize = file
        .metadata
        .opt_bool(&k("expert_weights_norm"))?
        .unwrap_or(true);
    let scale = file
        .metadata
        .opt_f64(&k("expert_weights_scale"))?
        .map_or(1.0, |s| s as f32);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ModelError::InvalidConfig(format!(
            "{} = {scale} must be positive",
            k("expert_weights_scale")
        )));
    }
    Ok(Some(Experts {
        n_expert,
        n_used,
        gating,
        normalize,
        scale,
    }))
}

/// The attention heads' shape, as the metadata gives it.
struct Heads {
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    n_rot: u32,
}

impl Heads {
    fn read(file: &GgufFile, k: &dyn Fn(&str) -> String, n_embd: u32) -> Result<Heads, ModelError> {
        let n_head = u32_key(file, &k("attention.head_count"))?;
        let n_kv_head = opt_u32_key(file, &k("attention.head_count_kv"))?.unwrap_or(n_head);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(ModelError::InvalidConfig(format!(
                "{} = {n_head} must be a nonzero multiple of {} = {n_kv_head}",
                k("attention.head_count"),
                k("attention.head_count_kv")
            )));
        }
        let head_dim = match opt_u32_key(file, &k("attention.key_length"))? {
            Some(d) => d,
            None if n_embd.is_multiple_of(n_head) => n_embd / n_head,
            None => {
                return Err(ModelError::InvalidConfig(format!(
                    "embedding_length {n_embd} is not a multiple of head_count {n_head}"
                )));
            }
        };
        if let Some(v) = opt_u32_key(file, &k("attention.value_length"))?
            && v != head_dim
        {
            return Err(ModelError::InvalidConfig(format!(
                "value_length {v} differs from key_length {head_dim}; Wisp needs them equal"
            )));
        }
        if head_dim == 0 || head_dim % 4 != 0 || head_dim > 256 {
            return Err(ModelError::InvalidConfig(format!(
                "head dimension {head_dim} is not supported (a multiple of 4, at most 256)"
            )));
        }
        let n_rot = opt_u32_key(file, &k("rope.dimension_count"))?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::InvalidConfig(format!(
                "rope.dimension_count {n_rot} must be even and at most the head dimension {head_dim}"
            )));
        }
        Ok(Heads {
            n_head,
            n_kv_head,
            head_dim,
            n_rot,
        })
    }
}

/// The RoPE base frequency and scaling.
fn rope(file: &GgufFile, k: &dyn Fn(&str) -> String) -> Result<(f32, RopeScaling), ModelError> {
    let base = file
        .metadata
        .opt_f64(&k("rope.freq_base"))?
        .unwrap_or(10000.0) as f32;
    let scaling = match file.metadata.opt_str(&k("rope.scaling.type"))? {
        None | Some("none") => RopeScaling::None,
        Some("linear") => {
            let f = file
                .metadata
                .opt_f64(&k("rope.scaling.factor"))?
                .unwrap_or(1.0) as f32;
            if f > 0.0 && f != 1.0 {
                RopeScaling::Linear(f)
            } else {
                RopeScaling::None
            }
        }
        Some(other) => {
            return Err(ModelError::InvalidConfig(format!(
                "unsupported RoPE scaling {other:?}"
            )));
        }
    };
    Ok((base, scaling))
}

/// Sliding-window attention: the window, each layer's window (0: global) and the RoPE
/// base of windowed layers.
struct Windows {
    sliding_window: Option<u32>,
    layer_windows: Vec<u32>,
    window_rope_base: Option<f32>,
}

impl Windows {
    fn read(
        file: &GgufFile,
        k: &dyn Fn(&str) -> String,
        n_layer: u32,
        options: &ArchOptions,
    ) -> Result<Windows, ModelError> {
        let sliding_window = opt_u32_key(file, &k("attention.sliding_window"))?.filter(|&w| w > 0);
        let pattern = match opt_u32_key(file, &k("attention.sliding_window_pattern"))? {
            Some(0) => None,
            Some(n) => Some(n),
            None => options.default_window_pattern,
        };
        // With a pattern of n, every n-th layer is global and the others are windowed.
        let layer_windows = (0..n_layer)
            .map(|i| match (sliding_window, pattern) {
                (None, _) => 0,
                (Some(w), None) => w,
                (Some(w), Some(n)) => {
                    if (i + 1) % n == 0 {
                        0
                    } else {
                        w
                    }
                }
            })
            .collect();
        let window_rope_base = match file.metadata.opt_f64(&k("rope.freq_base_swa"))? {
            Some(b) => Some(b as f32),
            None => options.window_rope_base,
        };
        Ok(Windows {
            sliding_window,
            layer_windows,
            window_rope_base,
        })
    }
}

impl ModelConfig {
    /// Reads the configuration of a GGUF model, refusing architectures Wisp cannot run
    /// and values that make no sense.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelConfig, ModelError> {
        let arch = file.architecture()?.to_string();
        let Some(options) = arch_options(&arch) else {
            return Err(ModelError::UnsupportedArchitecture(arch));
        };
        let k = |name: &str| format!("{arch}.{name}");
        let n_layer = u32_key(file, &k("block_count"))?;
        let n_embd = u32_key(file, &k("embedding_length"))?;
        let n_ff = u32_key(file, &k("feed_forward_length"))?;
        let Heads {
            n_head,
            n_kv_head,
            head_dim,
            n_rot,
        } = Heads::read(file, &k, n_embd)?;
        let (rope_freq_base, rope_scaling) = rope(file, &k)?;
        let rms_eps = file
            .metadata
            .require_f64(&k("attention.layer_norm_rms_epsilon"))? as f32;
        if !(rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(ModelError::InvalidConfig(format!(
                "RMS epsilon {rms_eps} is out of range"
            )));
        }
        let n_ctx_train = u32_key(file, &k("context_length"))?;
        let embd = file
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let vocab_size = match opt_u32_key(file, &k("vocab_size"))? {
            Some(v) => v,
            None => embd.dims.get(1).copied().unwrap_or(0) as u32,
        };
        let tied_embeddings = file.tensor("output.weight").is_none();
        let Windows {
            sliding_window,
            layer_windows,
            window_rope_base,
        } = Windows::read(file, &k, n_layer, &options)?;
        let experts = experts(file, &k)?;
        if experts.is_some() && options.post_norms {
            return Err(ModelError::InvalidConfig(format!(
                "{arch}: a mixture of experts with post-norms is not supported"
            )));
        }
        let cfg = ModelConfig {
            architecture: arch,
            arch: options,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_kv_head,
            head_dim,
            n_rot,
            rope_freq_base,
            rope_scaling,
            rms_eps,
            n_ctx_train,
            vocab_size,
            tied_embeddings,
            sliding_window,
            layer_windows,
            window_rope_base,
            experts,
        };
        cfg.check_widths()?;
        Ok(cfg)
    }

    /// Refuses sizes of zero and widths the kernels cannot tile (multiples of 32).
    fn check_widths(&self) -> Result<(), ModelError> {
        for (what, v) in [
            ("block_count", self.n_layer),
            ("embedding_length", self.n_embd),
            ("feed_forward_length", self.n_ff),
            ("vocab_size", self.vocab_size),
            ("context_length", self.n_ctx_train),
        ] {
            if v == 0 {
                return Err(ModelError::InvalidConfig(format!("{what} is 0")));
            }
        }
        let attention = self.n_head * self.head_dim;
        if ![self.n_embd, self.n_ff, attention]
            .iter()
            .all(|w| w.is_multiple_of(32))
        {
            return Err(ModelError::InvalidConfig(format!(
                "embedding ({}), feed-forward ({}) and attention ({attention}) widths must be multiples of 32",
                self.n_embd, self.n_ff
            )));
        }
        Ok(())
    }

    /// Query width (`n_head * head_dim`).
    pub fn q_dim(&self) -> u32 {
        self.n_head * self.head_dim
    }

    /// Key (and value) width (`n_kv_head * head_dim`).
    pub fn kv_dim(&self) -> u32 {
        self.n_kv_head * self.head_dim
    }

    /// The window every layer has, if every layer has one: then keys older than it can
    /// be skipped by every layer's attention and their blocks freed.
    pub fn window_on_every_layer(&self) -> Option<u32> {
        let w = self.sliding_window?;
        self.layer_windows.iter().all(|&lw| lw == w).then_some(w)
    }

    /// RoPE inverse frequencies of layer `layer`'s rotated pairs, computed in f64.
    /// Windowed layers may have their own base (then unscaled).
    pub fn rope_inv_freq(&self, layer: usize) -> Vec<f32> {
        let windowed = self.layer_windows.get(layer).is_some_and(|&w| w > 0);
        let (base, scale) = match (windowed, self.window_rope_base, self.rope_scaling) {
            (true, Some(base), _) => (base, 1.0),
            (_, _, RopeScaling::None) => (self.rope_freq_base, 1.0),
            (_, _, RopeScaling::Linear(f)) => (self.rope_freq_base, 1.0 / f as f64),
        };
        (0..self.n_rot / 2)
            .map(|i| (scale * (base as f64).powf(-2.0 * i as f64 / self.n_rot as f64)) as f32)
            .collect()
    }
}
