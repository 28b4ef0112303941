//! What the page asks for, parsed from plain JavaScript objects. Unknown or mistyped
//! fields are errors that name them, not silently ignored settings.

use serde::Deserialize;
use wisp_core::defaults::{ModelDefaults, SamplingOverrides};
use wisp_core::generate::GenerateOptions;
use wisp_core::gpu::{GpuError, VariantOverrides};
use wisp_core::kernels::TuningOverrides;
use wisp_core::speculative::{DrafterKind, SpeculationOptions};
use wisp_core::tokenizer::ChatMessage;

/// Options of [`WispEngine::create`](crate::WispEngine::create).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateRequest {
    /// Treat the storage-binding limit as this many bytes (at most the adapter's): splits
    /// matrices across more buffers, as on adapters with WebGPU's 128 MiB default.
    pub max_storage_binding: Option<u64>,
}

/// Options of [`WispEngine::load`](crate::WispEngine::load).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadRequest {
    /// Context length in tokens. Smaller than natively by default: without shader-f16
    /// (SwiftShader, many browsers) the KV cache is f32, and browsers cap GPU memory.
    pub context_size: u32,
    /// Kernel variant overrides, as `WISP_ACT` / `WISP_REDUCE` / `WISP_TIER` natively:
    /// `"f32"|"f16"`, `"subgroup"|"workgroup"`, `"cpu"|"gpu"`; absent chooses from the adapter.
    pub act: Option<String>,
    pub reduce: Option<String>,
    pub tier: Option<String>,
    /// Tuning overrides, as `WISP_TUNE` natively (`"matvec_wg=64,tokens_wg=8"`).
    pub tune: Option<String>,
    /// Record a drafting pass through the first layers, for `speculation: { selfDraft:
    /// true }` (`--self-draft LAYERS` natively): a number of layers, or `"auto"` for
    /// three quarters of the model's.
    pub self_draft: Option<SelfDraftLayers>,
}

impl Default for LoadRequest {
    fn default() -> Self {
        LoadRequest {
            context_size: 2048,
            act: None,
            reduce: None,
            tier: None,
            tune: None,
            self_draft: None,
        }
    }
}

/// [`LoadRequest::self_draft`]: a number of layers or a word.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SelfDraftLayers {
    Layers(u32),
    Word(String),
}

impl SelfDraftLayers {
    /// The drafting layers on a model of `n_layer` layers; the engine checks the range.
    pub fn layers(&self, n_layer: u32) -> Result<u32, String> {
        match self {
            SelfDraftLayers::Layers(n) => Ok(*n),
            SelfDraftLayers::Word(w) if w == "auto" => Ok((n_layer * 3 / 4).max(1)),
            SelfDraftLayers::Word(w) => Err(format!(
                "selfDraft {w:?} is not a number of layers or \"auto\""
            )),
        }
    }
}

impl LoadRequest {
    pub fn variant(&self) -> Result<VariantOverrides, GpuError> {
        VariantOverrides::parse(
            self.act.as_deref(),
            self.reduce.as_deref(),
            self.tier.as_deref(),
        )
    }

    /// `tune` parsed; an invalid one is an error naming `tune` and the fields it may set.
    pub fn tuning(&self) -> Result<TuningOverrides, GpuError> {
        match self.tune.as_deref() {
            Some(spec) => spec.parse(),
            None => Ok(TuningOverrides::default()),
        }
    }
}

/// Options of a generation: `{ maxTokens, stop, sampling: { temperature, top_k, … },
/// speculation: { lookup | selfDraft | draftModel, draftMax, draftMin, fixed } }`.
/// `sampling` takes [`SamplerConfig`](wisp_core::sampling::SamplerConfig)'s fields and
/// `seed`; the ones left out take the loaded model's defaults (its GGUF keys, else Wisp's
/// table of known models, else llama.cpp's), and `temperature: 0` is greedy.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateRequest {
    /// `None`: 256.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub sampling: SamplingOverrides,
    pub speculation: Option<SpeculationRequest>,
}

/// Speculative decoding with one drafter: `lookup: N` (prompt lookup of n-grams of up to
/// N tokens), `selfDraft: true` (the drafting pass the model was loaded with) or
/// `draftModel: true` (the model of `loadDraft`). `draftMax` (default 8) and `draftMin`
/// (default 1) bound the draft length, and `fixed` drafts `draftMax` every step instead of
/// adapting it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SpeculationRequest {
    pub lookup: Option<usize>,
    pub self_draft: bool,
    pub draft_model: bool,
    pub draft_max: Option<usize>,
    pub draft_min: Option<usize>,
    pub fixed: bool,
}

/// The drafters the loaded model offers besides prompt lookup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drafters {
    /// The drafting pass's layers, when the model was loaded with `selfDraft`.
    pub self_draft_layers: Option<u32>,
    /// A draft model was loaded with `loadDraft`.
    pub draft_model: bool,
}

impl SpeculationRequest {
    fn options(&self, drafters: Drafters) -> Result<SpeculationOptions, String> {
        let drafter = match (self.lookup, self.self_draft, self.draft_model) {
            (Some(ngram), false, false) => DrafterKind::Lookup { ngram },
            (None, true, false) => match drafters.self_draft_layers {
                Some(layers) => DrafterKind::SelfDraft { layers },
                None => {
                    return Err("speculation.selfDraft needs the model's drafting pass: \
                                load it with the selfDraft option"
                        .into());
                }
            },
            (None, false, true) if drafters.draft_model => DrafterKind::Model,
            (None, false, true) => {
                return Err(
                    "speculation.draftModel needs a draft model: load one with loadDraft".into(),
                );
            }
            _ => {
                return Err(
                    "speculation takes exactly one drafter: lookup, selfDraft or \
                            draftModel"
                        .into(),
                );
            }
        };
        let defaults = SpeculationOptions::new(drafter, self.draft_max.unwrap_or(8));
        Ok(SpeculationOptions {
            min_draft: self.draft_min.unwrap_or(defaults.min_draft),
            adaptive: !self.fixed,
            ..defaults
        })
    }
}

impl GenerateRequest {
    /// The options of this generation on a model with `defaults` and `drafters`, validated
    /// (an error names the bad field). Without a seed it is 0: the page passes its own.
    pub fn options(
        &self,
        defaults: &ModelDefaults,
        drafters: Drafters,
    ) -> Result<GenerateOptions, String> {
        let (_, sampler) = defaults
            .sampler(&self.sampling, self.sampling.seed.unwrap_or(0))
            .map_err(|e| e.to_string())?;
        let speculation = match &self.speculation {
            Some(s) => Some(s.options(drafters)?),
            None => None,
        };
        if let Some(s) = &speculation {
            s.validate().map_err(|e| e.to_string())?;
        }
        Ok(GenerateOptions {
            max_tokens: self.max_tokens.unwrap_or(256),
            sampler,
            stop: self.stop.clone(),
            ignore_eos: false,
            speculation,
            ..GenerateOptions::default()
        })
    }
}

/// The conversation of [`WispEngine::chat_messages`](crate::WispEngine::chat_messages)
/// (OpenAI's `messages`), ready to answer: its last message must be the user's, and the
/// model's default system message goes first when it has none (as in `chat` and `wisp chat`).
pub fn conversation_to_answer(
    messages: Vec<ChatMessage>,
    default_system: Option<&str>,
) -> Result<Vec<ChatMessage>, String> {
    match messages.last() {
        None => return Err("messages is empty: give at least the user's message".into()),
        Some(last) if last.role != "user" => {
            return Err(format!(
                "the last message is the {}'s: the conversation to answer must end with the user's",
                last.role
            ));
        }
        Some(_) => {}
    }
    let mut conversation = Vec::with_capacity(messages.len() + 1);
    if messages[0].role != "system"
        && let Some(system) = default_system
    {
        conversation.push(ChatMessage::new("system", system));
    }
    conversation.extend(messages);
    Ok(conversation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_the_model_defaults_and_unknown_ones_are_refused() {
        let r: GenerateRequest =
            serde_json::from_str(r#"{"maxTokens": 8, "sampling": {"temperature": 0}}"#).unwrap();
        let mut defaults = ModelDefaults::generic();
        defaults.sampling.top_k.value = 20;
        let options = r.options(&defaults, Drafters::default()).unwrap();
        assert_eq!(options.max_tokens, 8);
        assert!(options.sampler.is_greedy());
        assert_eq!(options.sampler.top_k, 20);
        let r: GenerateRequest = serde_json::from_str(r#"{"sampling": {"top_p": 0}}"#).unwrap();
        assert!(
            r.options(&defaults, Drafters::default())
                .unwrap_err()
                .to_string()
                .contains("top_p")
        );
        let e = serde_json::from_str::<GenerateRequest>(r#"{"max_tokens": 8}"#).unwrap_err();
        assert!(e.to_string().contains("max_tokens"), "{e}");
        let e =
            serde_json::from_str::<GenerateRequest>(r#"{"sampling": {"temp": 0.5}}"#).unwrap_err();
        assert!(e.to_string().contains("temp"), "{e}");
        let e = serde_json::from_str::<LoadRequest>(r#"{"contextSize": "big"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn speculation_takes_one_drafter_the_model_offers() {
        let defaults = ModelDefaults::generic();
        let parse = |json: &str| serde_json::from_str::<GenerateRequest>(json).unwrap();
        let both = Drafters {
            self_draft_layers: Some(20),
            draft_model: true,
        };
        let drafter = |json: &str, drafters: Drafters| {
            parse(json)
                .options(&defaults, drafters)
                .map(|o| o.speculation.unwrap().drafter)
        };
        let lookup = r#"{"speculation": {"lookup": 3}}"#;
        let self_draft = r#"{"speculation": {"selfDraft": true}}"#;
        let draft = r#"{"speculation": {"draftModel": true, "draftMax": 4}}"#;
        assert_eq!(
            drafter(lookup, Drafters::default()),
            Ok(DrafterKind::Lookup { ngram: 3 })
        );
        assert_eq!(
            drafter(self_draft, both),
            Ok(DrafterKind::SelfDraft { layers: 20 })
        );
        assert_eq!(drafter(draft, both), Ok(DrafterKind::Model));
        let e = drafter(self_draft, Drafters::default()).unwrap_err();
        assert!(e.contains("selfDraft option"), "{e}");
        let e = drafter(draft, Drafters::default()).unwrap_err();
        assert!(e.contains("loadDraft"), "{e}");
        let e = drafter(r#"{"speculation": {"lookup": 3, "selfDraft": true}}"#, both).unwrap_err();
        assert!(e.contains("exactly one drafter"), "{e}");
        let e = drafter(r#"{"speculation": {}}"#, both).unwrap_err();
        assert!(e.contains("exactly one drafter"), "{e}");
        let auto: LoadRequest = serde_json::from_str(r#"{"selfDraft": "auto"}"#).unwrap();
        assert_eq!(auto.self_draft.unwrap().layers(30), Ok(22));
        let bad: LoadRequest = serde_json::from_str(r#"{"selfDraft": "most"}"#).unwrap();
        assert!(
            bad.self_draft
                .unwrap()
                .layers(30)
                .unwrap_err()
                .contains("most")
        );
    }

    #[test]
    fn a_conversation_to_answer_ends_with_the_user_and_gets_the_default_system() {
        let user = ChatMessage::new("user", "Hi");
        let system = ChatMessage::new("system", "Be brief.");
        assert_eq!(
            conversation_to_answer(vec![user.clone()], Some("Be brief.")).unwrap(),
            [system, user.clone()]
        );
        let own = ChatMessage::new("system", "Be long.");
        assert_eq!(
            conversation_to_answer(vec![own.clone(), user.clone()], Some("Be brief.")).unwrap(),
            [own, user.clone()]
        );
        assert_eq!(
            conversation_to_answer(vec![user.clone()], None).unwrap(),
            std::slice::from_ref(&user)
        );
        let e = conversation_to_answer(vec![user, ChatMessage::new("assistant", "Hello")], None)
            .unwrap_err();
        assert!(e.contains("assistant"), "{e}");
        assert!(conversation_to_answer(Vec::new(), None).is_err());
    }
}
