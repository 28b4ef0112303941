//! [`Tokenizer`]: text to token ids and back, special tokens, and the model's chat template.

use std::fmt;

use super::TokenizerError;
use super::byte_level;
use super::chat_template::ChatTemplate;
use super::plain_text::PlainTextVocabulary;
use super::special::{SpecialTokens, TokenKind};
use super::stream::StreamDecoder;
use crate::gguf::Metadata;

/// How the bytes of each token are found when decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pieces {
    /// Byte-level BPE: a token's text spells bytes in GPT-2's alphabet; added tokens are
    /// plain text. Each token has its own bytes, so streaming needs no context.
    ByteLevel,
    /// Another `tokenizer.json` decoder (e.g. SentencePiece's `▁`): only the `tokenizers`
    /// crate's decoder knows the text, and it may depend on neighbouring tokens.
    Library,
}

/// A model's tokenizer. Build it from GGUF metadata or from Hugging Face's JSON files.
#[derive(Clone)]
pub struct Tokenizer {
    pub(crate) inner: tokenizers::Tokenizer,
    /// The kind of every id below `vocab_size()`.
    pub(crate) kinds: Vec<TokenKind>,
    pub(crate) special: SpecialTokens,
    /// The model's rule: prepend BOS / append EOS when a caller asks for special tokens.
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    pub(crate) pieces: Pieces,
    pub(crate) chat_template: Option<ChatTemplate>,
    /// For [`encode_plain_text`](Self::encode_plain_text).
    pub(crate) plain_text: PlainTextVocabulary,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inner tokenizer would print the whole vocabulary.
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("pieces", &self.pieces)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// The tokenizer a GGUF file's `tokenizer.*` metadata describes.
    pub fn from_gguf(metadata: &Metadata) -> Result<Self, TokenizerError> {
        super::gguf::from_gguf(metadata)
    }

    /// The tokenizer of Hugging Face's `tokenizer.json`; `tokenizer_config.json`, when given,
    /// supplies the BOS/EOS tokens, whether to add them, and the chat template.
    pub fn from_json(
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&[u8]>,
    ) -> Result<Self, TokenizerError> {
        super::hf_json::from_json(tokenizer_json, tokenizer_config_json)
    }

    /// Token ids of `text`. Special-token texts in it (`<|im_start|>`) become those tokens, as
    /// llama.cpp does with `parse_special`. With `add_bos`, BOS is prepended (and EOS appended)
    /// only where the model says so (`add_bos_token` / `add_eos_token`): llama.cpp's
    /// `add_special`.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::library("encoding text", e))?;
        let mut ids = Vec::with_capacity(encoding.len() + 2);
        if add_bos && self.add_bos {
            ids.extend(self.special.bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        if add_bos && self.add_eos {
            ids.extend(self.special.eos);
        }
        Ok(ids)
    }

    /// Token ids of a prompt, with BOS where the model wants it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode(text, true)
    }

    /// The text of `ids`, special tokens rendered as their text. Bytes that do not form UTF-8
    /// become U+FFFD. Spaces are kept as they are (no clean-up around punctuation), so that
    /// `decode(encode(x)) == x`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match self.pieces {
            Pieces::ByteLevel => {
                let mut bytes = Vec::new();
                for &id in ids {
                    bytes.extend_from_slice(&self.token_bytes(id)?);
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Pieces::Library => {
                for &id in ids {
                    self.check_id(id)?;
                }
                self.inner
                    .decode(ids, false)
                    .map_err(|e| TokenizerError::library("decoding tokens", e))
            }
        }
    }

    /// A decoder for generated tokens, one at a time.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// Number of token ids (the largest id plus one).
    pub fn vocab_size(&self) -> usize {
        self.kinds.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos
    }

    pub fn eot_id(&self) -> Option<u32> {
        self.special.eot
    }

    pub fn eom_id(&self) -> Option<u32> {
        self.special.eom
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad
    }

    pub fn unknown_id(&self) -> Option<u32> {
        self.special.unk
    }

    /// Whether [`encode_prompt`](Self::encode_prompt) prepends BOS.
    pub fn add_bos_token(&self) -> bool {
        self.add_bos
    }

    /// Whether generating `id` ends the answer: EOS, EOT, EOM, and the model's end-of-turn
    /// control tokens (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, …).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.special.is_end_of_generation(id)
    }

    /// Every id that ends generation, sorted.
    pub fn end_of_generation_ids(&self) -> &[u32] {
        &self.special.end_of_generation
    }

    /// Whether `id` is a control token (rendered as its text, never produced by plain text).
    pub fn is_special(&self, id: u32) -> bool {
        self.kind(id).is_some_and(TokenKind::is_special)
    }

    /// The vocabulary entry of `id` as stored (byte-level BPE spells a space `Ġ`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.kind(id)?;
        self.inner.id_to_token(id)
    }

    /// The text `id` decodes to on its own (`" Paris"`); a token holding part of a UTF-8
    /// character shows U+FFFD.
    pub fn token_piece(&self, id: u32) -> Result<String, TokenizerError> {
        self.decode(&[id])
    }

    /// The bytes `id` stands for on its own: exact for byte-level vocabularies (a token
    /// holding part of a UTF-8 character gives those bytes), else the UTF-8 of
    /// [`token_piece`](Self::token_piece). (The OpenAI API's `logprobs[].bytes`.)
    pub fn piece_bytes(&self, id: u32) -> Result<Vec<u8>, TokenizerError> {
        match self.pieces {
            Pieces::ByteLevel => self.token_bytes(id),
            Pieces::Library => Ok(self.token_piece(id)?.into_bytes()),
        }
    }

    /// The id of a vocabulary entry or added token with exactly this text.
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The chat template the model ships (`tokenizer.chat_template`), if any; callers fall
    /// back to [`ChatTemplate::builtin_for`] the vocabulary.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    pub(crate) fn pieces(&self) -> Pieces {
        self.pieces
    }

    fn kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(usize::try_from(id).ok()?).copied()
    }

    fn check_id(&self, id: u32) -> Result<TokenKind, TokenizerError> {
        self.kind(id).ok_or(TokenizerError::UnknownTokenId {
            id,
            vocab_size: self.vocab_size(),
        })
    }

    /// The bytes token `id` stands for (byte-level vocabularies only).
    pub(crate) fn token_bytes(&self, id: u32) -> Result<Vec<u8>, TokenizerError> {
        let kind = self.check_id(id)?;
        let text = self
            .inner
            .id_to_token(id)
            .ok_or(TokenizerError::UnknownTokenId {
                id,
                vocab_size: self.vocab_size(),
            })?;
        // Added tokens are stored as plain text (llama.cpp renders them verbatim).
        Ok(if kind.is_added() {
            text.into_bytes()
        } else {
            byte_level::text_to_bytes(&text)
        })
    }
}
