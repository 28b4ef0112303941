//! [`Tokenizer::from_gguf`]: the vocabulary kind named by `tokenizer.ggml.model`, then the keys
//! every kind shares (special token ids, BOS/EOS rules, chat template).

use super::TokenizerError;
use super::chat_template::ChatTemplate;
use super::special::{SpecialTokens, TokenKind};
use super::tokenize::{Pieces, Tokenizer};
use super::{bpe, spm};
use crate::gguf::Metadata;

/// What each vocabulary kind's builder (`bpe.rs`, `spm.rs`) makes from GGUF
/// metadata, before the keys common to every kind are applied.
pub(crate) struct Vocab {
    pub inner: tokenizers::Tokenizer,
    pub kinds: Vec<TokenKind>,
    /// Whether BOS is added when the GGUF has no `tokenizer.ggml.add_bos_token`.
    pub add_bos_default: bool,
    pub pieces: Pieces,
}

pub(crate) fn from_gguf(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
    let model = md.require_str("tokenizer.ggml.model")?;
    let vocab = match model {
        "gpt2" => bpe::from_gguf(md)?,
        "llama" => spm::from_gguf(md)?,
        other => {
            return Err(TokenizerError::Unsupported(format!(
                "tokenizer.ggml.model \"{other}\""
            )));
        }
    };
    finish(md, vocab)
}

/// Applies the keys common to every vocabulary kind.
fn finish(md: &Metadata, vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
    let Vocab {
        inner,
        kinds,
        add_bos_default,
        pieces,
    } = vocab;
    let n_tokens = kinds.len();
    let id = |key: &str| special_id(md, key, n_tokens);
    let mut special = SpecialTokens {
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        eot: id("tokenizer.ggml.eot_token_id")?,
        eom: id("tokenizer.ggml.eom_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        end_of_generation: Vec::new(),
    };
    let special_texts: Vec<(u32, String)> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| k.is_special())
        .filter_map(|(i, _)| {
            let i = u32::try_from(i).ok()?;
            Some((i, inner.id_to_token(i)?))
        })
        .collect();
    special.collect_end_of_generation(special_texts.iter().map(|(i, t)| (*i, t.as_str())));

    let add_bos = md
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(add_bos_default);
    let add_eos = md
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    if add_bos && special.bos.is_none() {
        return Err(TokenizerError::BadVocab(
            "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set"
                .into(),
        ));
    }
    if add_eos && special.eos.is_none() {
        return Err(TokenizerError::BadVocab(
            "tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set"
                .into(),
        ));
    }

    let text_of = |id: Option<u32>| id.and_then(|id| inner.id_to_token(id)).unwrap_or_default();
    let chat_template = md
        .opt_str("tokenizer.chat_template")?
        .map(|source| ChatTemplate::new(source, text_of(special.bos), text_of(special.eos)))
        .transpose()?;

    Ok(Tokenizer {
        inner,
        kinds,
        special,
        add_bos,
        add_eos,
        pieces,
        chat_template,
        plain_text: Default::default(),
    })
}

/// A special token id key. An id outside the vocabulary is ignored with a warning, as
/// llama.cpp does, so that a file with one stale id still loads.
fn special_id(md: &Metadata, key: &str, n_tokens: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(id) = md.opt_u64(key)? else {
        return Ok(None);
    };
    match u32::try_from(id) {
        Ok(id) if (id as usize) < n_tokens => Ok(Some(id)),
        _ => {
            tracing::warn!("{key} = {id} is outside the vocabulary ({n_tokens} tokens): ignored");
            Ok(None)
        }
    }
}
