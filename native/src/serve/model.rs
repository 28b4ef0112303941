//! The model being served, as the HTTP side needs it once it is loaded: its names, its
//! tokenizer and chat template (prompts are built and measured before a job is queued),
//! its default sampling values and system prompt, and its context size.

use std::sync::Arc;

use wisp_core::defaults::ModelDefaults;
use wisp_core::speculative::SpeculationOptions;
use wisp_core::tokenizer::{ChatMessage, ChatTemplate, Tokenizer, TokenizerError, chat_prompt_ids};

pub struct ServedModel {
    /// The id `GET /v1/models` lists.
    pub id: String,
    /// Other names a request's `model` may use for it (the `-m` argument, the file name).
    pub aliases: Vec<String>,
    /// Unix seconds when it was loaded (`created` in `/v1/models`).
    pub created: u64,
    pub tokenizer: Arc<Tokenizer>,
    /// The model's chat template, else a built-in one that fits its vocabulary.
    pub template: ChatTemplate,
    pub defaults: ModelDefaults,
    pub n_ctx: usize,
    /// The server's drafter (`--lookup`, `--self-draft`, `--draft`): every request
    /// speculates with it unless it sends `"speculative": false`.
    pub speculation: Option<SpeculationOptions>,
}

impl ServedModel {
    /// Whether a request's `model` names this model.
    pub fn answers_to(&self, name: &str) -> bool {
        self.id == name || self.aliases.iter().any(|a| a == name)
    }

    /// The token ids of a conversation, ready for the assistant's reply, built as `wisp
    /// chat` builds them: the model's default system message first when the conversation
    /// has none; the template's markup as control tokens, the messages' text as text
    /// (a message cannot smuggle in `<|im_start|>`).
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, TokenizerError> {
        let mut conversation = Vec::with_capacity(messages.len() + 1);
        if messages.first().is_none_or(|m| m.role != "system")
            && let Some(system) = self.defaults.system_prompt_or(None)
        {
            conversation.push(ChatMessage::new("system", system));
        }
        conversation.extend_from_slice(messages);
        chat_prompt_ids(&self.tokenizer, &self.template, &conversation, true)
    }

    /// The token ids of a raw prompt: special-token texts in it become those tokens, BOS
    /// where the model wants it (as llama.cpp's server does).
    pub fn raw_prompt(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.tokenizer.encode_prompt(text)
    }
}
