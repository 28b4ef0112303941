//! [`gguf_metadata_from_json`]: a byte-level BPE `tokenizer.json` (with its
//! `tokenizer_config.json`) as the `tokenizer.ggml.*` keys llama.cpp writes, for
//! `wisp convert` from a Hugging Face folder to GGUF.
//!
//! GGUF names its pre-tokenizer (`tokenizer.ggml.pre`) where `tokenizer.json` spells out
//! regexes. The name is found by running every pre-tokenizer Wisp knows and the file's own
//! on a probe text that tells them apart (llama.cpp's converter hashes the tokenization
//! of a similar text). The result is checked: the GGUF keys must tokenize the probe to
//! the same ids as the `tokenizer.json`.

use serde_json::Value as Json;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

use super::TokenizerError;
use super::pretokenizers::{self, PreTokenizerSpec};
use super::special::TokenKind;
use super::tokenize::{Pieces, Tokenizer};
use crate::gguf::{Metadata, Value};

/// Text on which the known pre-tokenizers split differently: runs of spaces, tabs and
/// newlines, digit runs of every length, contractions in both cases, punctuation runs,
/// non-Latin scripts and emoji.
const PROBE: &str = "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶‍🌫️ (multiple emojis) ✅ 🦙🦙 \
3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 ២០២៤ ?我想在apple工作1314151天～ \
------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? $+<=>^~| \
I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL THE'S \
don't\r\nWon'T\r\n\r\n  x";

/// The `tokenizer.ggml.*` keys (and `tokenizer.chat_template`) for the tokenizer that
/// `tokenizer_json` and `config_json` describe. `vocab_size` (the model's) pads the token
/// list with unused entries, as llama.cpp does, when the embedding has more rows.
pub fn gguf_metadata_from_json(
    tokenizer_json: &[u8],
    config_json: Option<&[u8]>,
    vocab_size: Option<u32>,
) -> Result<Vec<(String, Value)>, TokenizerError> {
    let hf = Tokenizer::from_json(tokenizer_json, config_json)?;
    let raw: Json = serde_json::from_slice(tokenizer_json)
        .map_err(|e| TokenizerError::BadJson(format!("tokenizer.json: {e}")))?;
    let model = &raw["model"];
    if model["type"].as_str() != Some("BPE") || hf.pieces != Pieces::ByteLevel {
        return Err(TokenizerError::Unsupported(
            "tokenizer.json: only byte-level BPE vocabularies (a BPE model with a ByteLevel decoder) can be written to GGUF".into(),
        ));
    }
    let (tokens, kinds) = tokens_by_id(&raw, vocab_size)?;
    let merges = merge_lines(&model["merges"])?;
    let spec = detect_pre_tokenizer(&hf, model["ignore_merges"].as_bool().unwrap_or(false))?;

    let mut md = vec![
        ("tokenizer.ggml.model".to_string(), Value::from("gpt2")),
        ("tokenizer.ggml.pre".to_string(), Value::from(spec.names[0])),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::string_array(tokens.iter().map(String::as_str)),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            Value::array_of(
                crate::gguf::ValueType::I32,
                kinds.iter().map(|k| k.to_gguf()),
            ),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            Value::string_array(merges.iter().map(String::as_str)),
        ),
        (
            "tokenizer.ggml.add_bos_token".to_string(),
            Value::from(hf.add_bos),
        ),
        (
            "tokenizer.ggml.add_eos_token".to_string(),
            Value::from(hf.add_eos),
        ),
    ];
    let ids = [
        ("tokenizer.ggml.bos_token_id", hf.special.bos),
        ("tokenizer.ggml.eos_token_id", hf.special.eos),
        ("tokenizer.ggml.unknown_token_id", hf.special.unk),
        ("tokenizer.ggml.padding_token_id", hf.special.pad),
    ];
    md.extend(
        ids.into_iter()
            .filter_map(|(k, id)| Some((k.to_string(), Value::from(id?)))),
    );
    if let Some(t) = hf.chat_template() {
        md.push((
            "tokenizer.chat_template".to_string(),
            Value::from(t.source()),
        ));
    }

    // The keys must describe the same tokenizer.
    let mut check = Metadata::new();
    for (k, v) in &md {
        check.insert(k.clone(), v.clone());
    }
    let gguf = Tokenizer::from_gguf(&check)?;
    if gguf.encode(PROBE, true)? != hf.encode(PROBE, true)? {
        return Err(TokenizerError::Unsupported(format!(
            "tokenizer.json tokenizes differently once written as GGUF (pre-tokenizer \"{}\")",
            spec.names[0]
        )));
    }
    Ok(md)
}

/// Every id's text and kind: the model's vocabulary, then the added tokens (control when
/// special, user-defined otherwise); ids nobody holds become unused `[PAD<id>]` entries.
fn tokens_by_id(
    raw: &Json,
    vocab_size: Option<u32>,
) -> Result<(Vec<String>, Vec<TokenKind>), TokenizerError> {
    let bad = |what: String| TokenizerError::BadJson(format!("tokenizer.json: {what}"));
    let vocab = raw["model"]["vocab"]
        .as_object()
        .ok_or_else(|| bad("model.vocab is not an object".into()))?;
    let mut entries: Vec<(u32, String, TokenKind)> = Vec::with_capacity(vocab.len());
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| bad(format!("model.vocab[{text:?}] is not a token id")))?;
        entries.push((id, text.clone(), TokenKind::Normal));
    }
    for t in raw["added_tokens"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (Some(id), Some(text)) = (
            t["id"].as_u64().and_then(|i| u32::try_from(i).ok()),
            t["content"].as_str(),
        ) else {
            return Err(bad(format!("added token {t} has no id or content")));
        };
        let kind = if t["special"].as_bool() == Some(true) {
            TokenKind::Control
        } else {
            TokenKind::UserDefined
        };
        entries.retain(|(i, _, _)| *i != id);
        entries.push((id, text.to_string(), kind));
    }
    let n = entries
        .iter()
        .map(|(id, _, _)| *id as usize + 1)
        .max()
        .unwrap_or(0)
        .max(vocab_size.unwrap_or(0) as usize);
    let mut tokens: Vec<Option<(String, TokenKind)>> = vec![None; n];
    for (id, text, kind) in entries {
        tokens[id as usize] = Some((text, kind));
    }
    Ok(tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), TokenKind::Unused)))
        .unzip())
}

/// `model.merges`: "left right" strings, or (newer files) `[left, right]` pairs.
fn merge_lines(merges: &Json) -> Result<Vec<String>, TokenizerError> {
    let list = merges.as_array().ok_or_else(|| {
        TokenizerError::BadJson("tokenizer.json: model.merges is not a list".into())
    })?;
    list.iter()
        .enumerate()
        .map(|(i, m)| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(pair) => match (
                pair.first().and_then(Json::as_str),
                pair.get(1).and_then(Json::as_str),
            ) {
                (Some(a), Some(b)) if pair.len() == 2 => Ok(format!("{a} {b}")),
                _ => Err(TokenizerError::BadJson(format!(
                    "tokenizer.json: model.merges[{i}] is not a pair of strings"
                ))),
            },
            other => Err(TokenizerError::BadJson(format!(
                "tokenizer.json: model.merges[{i}] is {other}"
            ))),
        })
        .collect()
}

/// The pieces a pre-tokenizer splits [`PROBE`] into.
fn pieces(pre: &impl PreTokenizer) -> Option<Vec<String>> {
    let mut s = PreTokenizedString::from(PROBE);
    pre.pre_tokenize(&mut s).ok()?;
    Some(
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(p, _, _)| p.to_string())
            .collect(),
    )
}

/// The known pre-tokenizer that splits like the `tokenizer.json` one (and merges like it:
/// some share their regexes and differ in `ignore_merges`).
fn detect_pre_tokenizer(
    hf: &Tokenizer,
    ignore_merges: bool,
) -> Result<&'static PreTokenizerSpec, TokenizerError> {
    let unsupported = |why: &str| TokenizerError::Unsupported(format!("tokenizer.json: {why}"));
    let own = hf
        .inner
        .get_pre_tokenizer()
        .ok_or_else(|| unsupported("no pre-tokenizer"))?;
    let target =
        pieces(own).ok_or_else(|| unsupported("its pre-tokenizer fails on the probe text"))?;
    pretokenizers::all()
        .iter()
        .filter(|spec| spec.ignore_merges == ignore_merges)
        .find(|spec| pretokenizers::byte_level(spec).ok().and_then(|p| pieces(&p)).as_ref() == Some(&target))
        .ok_or_else(|| unsupported("its pre-tokenizer splits text like none of those Wisp knows (see tokenizer.ggml.pre)"))
}
