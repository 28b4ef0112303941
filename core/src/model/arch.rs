//! What distinguishes the architectures Wisp runs. Each is one row of options for the
//! single transformer block in `engine::forward`; adding an architecture means adding a
//! row here (and, if it needs a new kind of option, teaching the block that option).

use serde::Serialize;

/// Which dimensions of a head RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): llama.cpp's "normal" RoPE. GGUF llama files store Q and K rows
    /// permuted for it.
    Interleaved,
    /// Pairs (i, i + n_rot/2): llama.cpp's "NEOX" RoPE, as the Hugging Face weights of
    /// qwen2 and gemma3 are stored.
    HalfSplit,
}

/// The gate's nonlinearity in the gated feed-forward network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FfnActivation {
    /// SwiGLU: silu(gate) * up.
    Silu,
    /// GeGLU with the tanh approximation of GELU.
    GeluTanh,
}

/// Options of the transformer block for one architecture.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ArchOptions {
    pub rope_style: RopeStyle,
    /// `attn_{q,k,v}.bias` are added to the projections.
    pub qkv_bias: bool,
    /// Each query and key head is RMS-normalised (`attn_{q,k}_norm`) before RoPE.
    pub qk_norm: bool,
    /// The attention and feed-forward outputs are RMS-normalised
    /// (`post_attention_norm`, `post_ffw_norm`) before they join the residual stream.
    pub post_norms: bool,
    pub ffn_activation: FfnActivation,
    /// The embedding is multiplied by sqrt(n_embd).
    pub scale_embedding: bool,
    /// Sliding-window layers interleave with global ones: every `n`-th layer is
    /// global (when the GGUF says nothing else). `None`: the window, if any, is on
    /// every layer.
    pub default_window_pattern: Option<u32>,
    /// RoPE base of the sliding-window layers, when it differs from the global one.
    pub window_rope_base: Option<f32>,
}

const LLAMA: ArchOptions = ArchOptions {
    rope_style: RopeStyle::Interleaved,
    qkv_bias: false,
    qk_norm: false,
    post_norms: false,
    ffn_activation: FfnActivation::Silu,
    scale_embedding: false,
    default_window_pattern: None,
    window_rope_base: None,
};

/// The architectures Wisp runs, by their GGUF `general.architecture`.
pub const ARCHITECTURES: &[(&str, ArchOptions)] = &[
    ("llama", LLAMA),
    (
        "qwen2",
        ArchOptions {
            rope_style: RopeStyle::HalfSplit,
            qkv_bias: true,
            ..LLAMA
        },
    ),
    (
        "gemma3",
        ArchOptions {
            rope_style: RopeStyle::HalfSplit,
            qk_norm: true,
            post_norms: true,
            ffn_activation: FfnActivation::GeluTanh,
            scale_embedding: true,
            // Five local layers, then a global one (Gemma 3's published layout, which
            // llama.cpp also assumes when the GGUF has no pattern key).
            default_window_pattern: Some(6),
            window_rope_base: Some(10_000.0),
            ..LLAMA
        },
    ),
];

/// The options of `arch`, if Wisp runs it.
pub fn arch_options(arch: &str) -> Option<ArchOptions> {
    ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(_, o)| *o)
}

/// "llama, qwen2, gemma3": for error messages.
pub fn architecture_names() -> String {
    ARCHITECTURES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}
