//! The models Wisp knows (the `wisp` CLI's known models), what their authors recommend,
//! and how each is recognised from its GGUF metadata.
//!
//! Values come from the authors' `generation_config.json` where it sets them, else from
//! the model card; a value the authors do not give is left to the generic default. Hugging
//! Face's `repetition_penalty` is the same multiplicative penalty as Wisp's
//! `repeat_penalty`, but transformers applies it to every token of the sequence, while
//! Wisp (like llama.cpp) looks at the last `penalty_last_n` tokens (64 by default).

use crate::gguf::Metadata;

use super::{ModelDefaults, Source, Sourced};

/// A recommended value and where its authors say so.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recommended<T> {
    pub value: T,
    /// Where the value comes from, in a few words (shown by `wisp info`).
    pub reference: &'static str,
}

const fn rec<T>(value: T, reference: &'static str) -> Option<Recommended<T>> {
    Some(Recommended { value, reference })
}

/// One known model: how to recognise it and what it runs with by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnownModelDefaults {
    /// The model's name among the `wisp` CLI's known models.
    pub name: &'static str,
    /// `general.architecture`.
    pub architecture: &'static str,
    /// Words that `general.name`, `general.basename`, `general.size_label` and
    /// `general.finetune` must all contain between them (compared in lowercase, letters
    /// and digits only, so "SmolLM2 135M Instruct" and "smollm2-135m-instruct" both match).
    pub name_parts: &'static [&'static str],
    /// Tokens in `tokenizer.ggml.tokens`: tells a model from a fine-tune with another
    /// vocabulary that kept the name.
    pub vocab_size: usize,
    /// Text `tokenizer.chat_template` must contain, where the name keys do not tell the
    /// instruction-tuned model from its base (the SmolLM2 GGUF is named after its training
    /// run, "Smollm2 135M 8k Lc100K Mix1 Ep2").
    pub template_marker: Option<&'static str>,
    pub temperature: Option<Recommended<f32>>,
    pub top_k: Option<Recommended<usize>>,
    pub top_p: Option<Recommended<f32>>,
    pub min_p: Option<Recommended<f32>>,
    pub repeat_penalty: Option<Recommended<f32>>,
    /// The system prompt of a conversation that has none (empty: an empty system message,
    /// which keeps the template from inserting its own). When its reference is the chat
    /// template, it is used only if the file's template has that very text (a file whose
    /// template differs keeps the template's own behaviour).
    pub system_prompt: Option<Recommended<&'static str>>,
}

/// Where a system prompt that the authors' chat template inserts is recorded from.
const FROM_CHAT_TEMPLATE: &str = "the default the authors' chat template inserts";

pub static KNOWN_MODEL_DEFAULTS: &[KnownModelDefaults] = &[
    KnownModelDefaults {
        name: "smollm2-135m-instruct-q4_1",
        architecture: "llama",
        name_parts: &["smollm2", "135m"],
        vocab_size: 49152,
        template_marker: Some("assistant named SmolLM"),
        // HuggingFaceTB/SmolLM2-135M-Instruct: generation_config.json sets no sampling
        // values (token ids only); the model card's example is
        // `model.generate(inputs, max_new_tokens=50, temperature=0.2, top_p=0.9, do_sample=True)`.
        temperature: rec(0.2, "model card (generate example: temperature=0.2)"),
        top_p: rec(0.9, "model card (generate example: top_p=0.9)"),
        // Not given by the card: top-k, min-p and the repeat penalty keep the generic defaults.
        top_k: None,
        min_p: None,
        repeat_penalty: None,
        // An empty system message, not the one the chat template inserts when there is none
        // ("You are a helpful AI assistant named SmolLM, trained by Hugging Face"). Measured
        // on this Q4_1 file at the card's sampling: after the template's system prompt the
        // first token of the answer to "What is the capital of France?" is "The" 25.33, "L"
        // 25.24, "La" 24.94 (logits), and 4 of seeds 1-10 answer in French ("L'Étoile, la
        // Marseillaise, …"); "What is the capital of Spain?" starts "El Salvador, …" for
        // every seed. After an empty system message "The" leads by 1.3 and 0.5, and seeds
        // 1-10 all answer "The capital of France is Paris.", seeds 1-4 "… of Spain is
        // Madrid."; other questions answered no worse.
        system_prompt: rec(
            "",
            "Wisp's choice, measured: the template's own system prompt makes this file answer in the question's language",
        ),
    },
    KnownModelDefaults {
        name: "gemma-3-270m-q4_k_m",
        architecture: "gemma3",
        name_parts: &["gemma3", "270m"],
        vocab_size: 262144,
        // The pretrained model ("Gemma 3 270m", no chat template in the file); the
        // instruction-tuned one (-it) has the same recommendations and matches too.
        template_marker: None,
        // google/gemma-3-270m generation_config.json: `"top_k": 64, "top_p": 0.95` and no
        // temperature, so transformers samples at its default of 1.0, which is also the
        // Gemma team's recommendation (temperature 1.0, top_k 64, top_p 0.95).
        temperature: rec(
            1.0,
            "generation_config.json sets none: transformers' 1.0, as the Gemma team recommends",
        ),
        top_k: rec(64, "generation_config.json (top_k)"),
        top_p: rec(0.95, "generation_config.json (top_p)"),
        min_p: None,
        repeat_penalty: None,
        // Gemma has no system role, and its template inserts no system text.
        system_prompt: None,
    },
    KnownModelDefaults {
        name: "qwen2.5-coder-0.5b-instruct-q4_k_m",
        architecture: "qwen2",
        // The file is the AWQ build ("Qwen2.5 Coder 0.5B Instruct AWQ"), same model.
        name_parts: &["qwen25", "coder", "05b", "instruct"],
        vocab_size: 151936,
        template_marker: None,
        // Qwen/Qwen2.5-Coder-0.5B-Instruct generation_config.json: temperature 0.7,
        // top_p 0.8, top_k 20, repetition_penalty 1.05. One file for the whole Qwen2.5-Coder
        // Instruct family since the authors' update of Nov 2024 ("update
        // tokenizer_config.json,config.json,generation_config.json"); the 32B-Instruct's reads
        // `"repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20`, and
        // the 0.5B's has its size, 243 bytes (with 1.1, as Qwen2-0.5B-Instruct had, it would
        // be 242). No min-p: it keeps the generic default.
        temperature: rec(0.7, "generation_config.json (temperature)"),
        top_k: rec(20, "generation_config.json (top_k)"),
        top_p: rec(0.8, "generation_config.json (top_p)"),
        min_p: None,
        repeat_penalty: rec(1.05, "generation_config.json (repetition_penalty)"),
        // The chat template starts a conversation that has no system message with this one.
        system_prompt: rec(
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
            FROM_CHAT_TEMPLATE,
        ),
    },
];

/// Lowercase letters and digits of `text`, nothing else.
fn squeeze(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The known model whose metadata this is, if any: same architecture, same vocabulary size,
/// every one of its name parts in the file's name keys, and its template marker (if it has
/// one) in the chat template.
pub fn identify_known_model(metadata: &Metadata) -> Option<&'static KnownModelDefaults> {
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    let architecture = text("general.architecture");
    let names = squeeze(
        &[
            "general.name",
            "general.basename",
            "general.size_label",
            "general.finetune",
        ]
        .map(text)
        .join(" "),
    );
    let vocab_size = metadata
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .map_or(0, <[_]>::len);
    KNOWN_MODEL_DEFAULTS.iter().find(|known| {
        known.architecture == architecture
            && known.vocab_size == vocab_size
            && known.name_parts.iter().all(|part| names.contains(part))
            && known
                .template_marker
                .is_none_or(|marker| template_has(metadata, marker))
    })
}

impl KnownModelDefaults {
    /// Puts this model's recommended values into `defaults`, each with its reference.
    pub(super) fn apply_to(&'static self, defaults: &mut ModelDefaults, metadata: &Metadata) {
        let source = |r: &'static str| Source::KnownModel {
            model: self.name,
            reference: r,
        };
        let s = &mut defaults.sampling;
        if let Some(r) = self.temperature {
            s.temperature = Sourced::new(r.value, source(r.reference));
        }
        if let Some(r) = self.top_k {
            s.top_k = Sourced::new(r.value, source(r.reference));
        }
        if let Some(r) = self.top_p {
            s.top_p = Sourced::new(r.value, source(r.reference));
        }
        if let Some(r) = self.min_p {
            s.min_p = Sourced::new(r.value, source(r.reference));
        }
        if let Some(r) = self.repeat_penalty {
            s.repeat_penalty = Sourced::new(r.value, source(r.reference));
        }
        if let Some(r) = self.system_prompt
            && (r.reference != FROM_CHAT_TEMPLATE || template_has(metadata, r.value))
        {
            defaults.system_prompt = Sourced::new(Some(r.value.to_string()), source(r.reference));
        }
        defaults.known_model = Some(self.name);
    }
}

/// Whether the file's chat template contains `text`.
fn template_has(metadata: &Metadata, text: &str) -> bool {
    metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
        .is_some_and(|t| t.contains(text))
}
