//! Text whose control-token texts stay text: llama.cpp's `parse_special = false`.
//!
//! [`Tokenizer::encode`] matches every added token's text first (control and user-defined
//! tokens, in one leftmost-longest pass of the `tokenizers` crate's added vocabulary), then
//! runs the normalizer, pre-tokenizer and model on the text between them. Here the same
//! pipeline runs with an added vocabulary that skips control tokens
//! (`AddedVocabulary::set_encode_special_tokens`): `<|im_start|>` in the text is spelled
//! with ordinary tokens, while user-defined tokens are still matched, as llama.cpp's
//! partition still matches them when it does not parse special tokens.

use std::ops::Range;
use std::sync::OnceLock;

use tokenizers::{AddedVocabulary, Model, OffsetReferential, OffsetType, PreTokenizer};

use super::TokenizerError;
use super::tokenize::Tokenizer;

/// The tokenizer's added vocabulary with control tokens skipped, made on first use (it is
/// a copy of the added vocabulary's matcher, which Gemma's 6,000 control tokens make large).
#[derive(Clone, Default)]
pub(crate) struct PlainTextVocabulary(OnceLock<AddedVocabulary>);

/// A piece of a text as [`Tokenizer::encode`] cuts it: a control token, or the text between
/// two of them (user-defined tokens included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Control { id: u32, range: Range<usize> },
    Text(Range<usize>),
}

impl Tokenizer {
    /// Token ids of `text` with no control token among them: control-token texts in it
    /// (`<|im_start|>`) are spelled with ordinary tokens, as llama.cpp tokenizes with
    /// `parse_special = false`. User-defined tokens (Qwen's `<tool_call>`) are still
    /// matched, as there. No BOS. For text that holds no control token's text the ids are
    /// those of [`encode`](Self::encode)`(text, false)`.
    pub fn encode_plain_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let added = self.plain_text.0.get_or_init(|| {
            let mut added = self.inner.get_added_vocabulary().clone();
            added.set_encode_special_tokens(true);
            added
        });
        // `TokenizerImpl::encode_fast`'s steps, with `added` for the tokenizer's own.
        let mut pretokenized = added.extract_and_normalize(self.inner.get_normalizer(), text);
        if let Some(pre_tokenizer) = self.inner.get_pre_tokenizer() {
            pre_tokenizer
                .pre_tokenize(&mut pretokenized)
                .map_err(|e| TokenizerError::library("pre-tokenizing text", e))?;
        }
        self.inner
            .get_model()
            .tokenize_in_pretokenized(&mut pretokenized, None)
            .map_err(|e| TokenizerError::library("encoding text", e))?;
        let encoding = pretokenized
            .into_encoding(None, 0, OffsetType::None)
            .map_err(|e| TokenizerError::library("encoding text", e))?;
        let encoding = self
            .inner
            .post_process(encoding, None, false)
            .map_err(|e| TokenizerError::library("encoding text", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `text` cut where [`encode`](Self::encode) matches a control token; the text between
    /// two of them is one piece (byte ranges of `text`, none empty). Only the control tokens
    /// matched in the text as it is (not normalized) cut it: all of a GGUF vocabulary's.
    /// Text with a control token that only matches once normalized is one text piece,
    /// which `encode_plain_text` encodes as text.
    pub(crate) fn control_pieces(&self, text: &str) -> Vec<Piece> {
        // Added tokens are matched in the text before any normalizer: no normalizer here
        // keeps the offsets those of `text`.
        let added = self.inner.get_added_vocabulary();
        let split = added.extract_and_normalize::<tokenizers::NormalizerWrapper>(None, text);
        let mut pieces = Vec::new();
        let mut text_start = 0;
        for (_, (start, end), tokens) in
            split.get_splits(OffsetReferential::Original, OffsetType::Byte)
        {
            let id = match tokens.as_deref() {
                // The very tokens `encode_plain_text` leaves as text.
                Some([token]) if added.is_special_token(&token.value) => token.id,
                _ => continue,
            };
            if text_start < start {
                pieces.push(Piece::Text(text_start..start));
            }
            pieces.push(Piece::Control {
                id,
                range: start..end,
            });
            text_start = end;
        }
        if text_start < text.len() {
            pieces.push(Piece::Text(text_start..text.len()));
        }
        pieces
    }

    /// Whether `encode` would parse a control token in `text`. Unlike `control_pieces`
    /// this runs the normalizer, as `encode` does, so that it also sees the control tokens
    /// a `tokenizer.json` matches in normalized text (GGUF vocabularies have none).
    pub(crate) fn has_control_text(&self, text: &str) -> bool {
        let added = self.inner.get_added_vocabulary();
        added
            .extract_and_normalize(self.inner.get_normalizer(), text)
            .get_splits(OffsetReferential::Original, OffsetType::None)
            .into_iter()
            .any(|(_, _, tokens)| {
                matches!(tokens.as_deref(), Some([token]) if added.is_special_token(&token.value))
            })
    }
}
