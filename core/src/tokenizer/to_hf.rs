//! [`Tokenizer::to_hf_json`]: the tokenizer as Hugging Face's `tokenizer.json` and
//! `tokenizer_config.json`, for `wisp convert` from GGUF to a Hugging Face folder.

use serde_json::{Value as Json, json};

use super::TokenizerError;
use super::tokenize::Tokenizer;

impl Tokenizer {
    /// `tokenizer.json` (the vocabulary, merges, pre-tokenizer, decoder and added tokens
    /// exactly as Wisp runs them) and `tokenizer_config.json` (BOS/EOS, whether to add
    /// them, the chat template). [`Tokenizer::from_json`] reads them back as the same
    /// tokenizer.
    pub fn to_hf_json(&self) -> Result<(String, String), TokenizerError> {
        let tokenizer_json = self
            .inner
            .to_string(true)
            .map_err(|e| TokenizerError::library("serializing tokenizer.json", e))?;
        let text = |id: Option<u32>| {
            id.and_then(|id| self.inner.id_to_token(id))
                .map_or(Json::Null, Json::from)
        };
        let config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": text(self.special.bos),
            "eos_token": text(self.special.eos),
            "unk_token": text(self.special.unk),
            "pad_token": text(self.special.pad),
            "add_bos_token": self.add_bos,
            "add_eos_token": self.add_eos,
            "clean_up_tokenization_spaces": false,
            "chat_template": self.chat_template.as_ref().map(|t| t.source()),
        });
        let config_json = serde_json::to_string_pretty(&config)
            .map_err(|e| TokenizerError::library("serializing tokenizer_config.json", e))?;
        Ok((tokenizer_json, config_json))
    }
}
