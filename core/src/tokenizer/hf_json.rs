//! [`Tokenizer::from_json`]: Hugging Face's `tokenizer.json`, with `tokenizer_config.json`
//! for the BOS/EOS tokens, whether to add them, and the chat template.

use serde_json::Value as Json;
use tokenizers::DecoderWrapper;

use super::TokenizerError;
use super::chat_template::ChatTemplate;
use super::special::{SpecialTokens, TokenKind};
use super::tokenize::{Pieces, Tokenizer};

pub(crate) fn from_json(
    tokenizer_json: &[u8],
    config_json: Option<&[u8]>,
) -> Result<Tokenizer, TokenizerError> {
    let inner = tokenizers::Tokenizer::from_bytes(tokenizer_json)
        .map_err(|e| TokenizerError::BadJson(format!("tokenizer.json: {e}")))?;
    let config: Json = match config_json {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| TokenizerError::BadJson(format!("tokenizer_config.json: {e}")))?,
        None => Json::Null,
    };

    let kinds = token_kinds(&inner);
    let pieces = match inner.get_decoder() {
        Some(DecoderWrapper::ByteLevel(_)) => Pieces::ByteLevel,
        _ => Pieces::Library,
    };
    let mut special = configured_special_tokens(&inner, &config)?;
    let (add_bos, add_eos) = bos_eos_rule(&inner, &config, &kinds, &mut special)?;
    let added = inner.get_added_tokens_decoder();
    special.collect_end_of_generation(
        added
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (*id, t.content.as_str())),
    );
    let chat_template = chat_template(&inner, &config, &special)?;

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

/// The BOS, EOS, UNK and PAD tokens that tokenizer_config.json names; each must be in the
/// vocabulary.
fn configured_special_tokens(
    inner: &tokenizers::Tokenizer,
    config: &Json,
) -> Result<SpecialTokens, TokenizerError> {
    let token_id = |key: &str| -> Result<Option<u32>, TokenizerError> {
        let Some(text) = config_token(config, key) else {
            return Ok(None);
        };
        inner.token_to_id(text).map(Some).ok_or_else(|| {
            TokenizerError::BadJson(format!(
                "tokenizer_config.json: {key} \"{text}\" is not in the vocabulary"
            ))
        })
    };
    Ok(SpecialTokens {
        bos: token_id("bos_token")?,
        eos: token_id("eos_token")?,
        unk: token_id("unk_token")?,
        pad: token_id("pad_token")?,
        ..SpecialTokens::default()
    })
}

/// Whether to add BOS and EOS around a text: as tokenizer_config.json says, else as the
/// post-processor does (Llama 3's tokenizer.json adds <|begin_of_text|>, its config says
/// nothing). A BOS the config does not name is taken from the post-processor too.
fn bos_eos_rule(
    inner: &tokenizers::Tokenizer,
    config: &Json,
    kinds: &[TokenKind],
    special: &mut SpecialTokens,
) -> Result<(bool, bool), TokenizerError> {
    let probe = inner
        .encode_fast("", true)
        .map_err(|e| TokenizerError::library("probing the post-processor", e))?
        .get_ids()
        .to_vec();
    if special.bos.is_none() {
        special.bos = probe
            .first()
            .copied()
            .filter(|&id| Some(id) != special.eos && is_special(kinds, id));
    }
    let add_bos = match config.get("add_bos_token").and_then(Json::as_bool) {
        Some(add) => add,
        None => special.bos.is_some() && probe.first().copied() == special.bos,
    };
    let add_eos = match config.get("add_eos_token").and_then(Json::as_bool) {
        Some(add) => add,
        None => {
            special.eos.is_some()
                && probe.last().copied() == special.eos
                && (probe.len() > 1 || !add_bos)
        }
    };
    if add_bos && special.bos.is_none() {
        return Err(TokenizerError::BadJson(
            "add_bos_token is true, but there is no bos_token".into(),
        ));
    }
    if add_eos && special.eos.is_none() {
        return Err(TokenizerError::BadJson(
            "add_eos_token is true, but there is no eos_token".into(),
        ));
    }
    Ok((add_bos, add_eos))
}

/// The config's chat template, given the text of the BOS and EOS tokens.
fn chat_template(
    inner: &tokenizers::Tokenizer,
    config: &Json,
    special: &SpecialTokens,
) -> Result<Option<ChatTemplate>, TokenizerError> {
    let text_of = |id: Option<u32>| id.and_then(|id| inner.id_to_token(id)).unwrap_or_default();
    chat_template_source(config)?
        .map(|source| ChatTemplate::new(source, text_of(special.bos), text_of(special.eos)))
        .transpose()
}

/// The kind of every id: added tokens are control (special) or user-defined, the rest normal.
fn token_kinds(inner: &tokenizers::Tokenizer) -> Vec<TokenKind> {
    let vocab = inner.get_vocab(true);
    let n = vocab.values().max().map_or(0, |&max| max as usize + 1);
    let mut kinds = vec![TokenKind::Normal; n];
    for (id, token) in inner.get_added_tokens_decoder() {
        if let Some(kind) = kinds.get_mut(id as usize) {
            *kind = if token.special {
                TokenKind::Control
            } else {
                TokenKind::UserDefined
            };
        }
    }
    kinds
}

fn is_special(kinds: &[TokenKind], id: u32) -> bool {
    kinds.get(id as usize).is_some_and(|k| k.is_special())
}

/// A token in tokenizer_config.json: a string, or an object with its `content`.
fn config_token<'a>(config: &'a Json, key: &str) -> Option<&'a str> {
    match config.get(key)? {
        Json::String(text) => Some(text),
        Json::Object(map) => map.get("content")?.as_str(),
        _ => None,
    }
}

/// `chat_template`: a string, or a list of named templates of which "default" is the chat one.
fn chat_template_source(config: &Json) -> Result<Option<&str>, TokenizerError> {
    match config.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(source)) => Ok(Some(source)),
        Some(Json::Array(list)) => {
            let named = |name: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Json::as_str) == Some(name))
                    .and_then(|t| t.get("template")?.as_str())
            };
            Ok(named("default"))
        }
        Some(other) => Err(TokenizerError::BadJson(format!(
            "tokenizer_config.json: chat_template should be a string, not {other}"
        ))),
    }
}
