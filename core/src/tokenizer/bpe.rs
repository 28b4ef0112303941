//! Byte-level BPE vocabularies from GGUF (`tokenizer.ggml.model = "gpt2"`): GPT-2, SmolLM,
//! Qwen, Llama 3.

use tokenizers::AddedToken;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Merges, Vocab as BpeVocab};

use super::TokenizerError;
use super::control_texts;
use super::gguf::Vocab;
use super::pretokenizers;
use super::special::TokenKind;
use super::tokenize::Pieces;
use crate::gguf::Metadata;

/// Builds the byte-level BPE tokenizer a GGUF file describes.
pub(crate) fn from_gguf(md: &Metadata) -> Result<Vocab, TokenizerError> {
    let spec = match md.opt_str("tokenizer.ggml.pre")? {
        Some(name) => pretokenizers::lookup(name)?,
        None => {
            // llama.cpp loads such (old) files with its default split, and warns.
            tracing::warn!("GGUF has no tokenizer.ggml.pre: using the \"default\" pre-tokenizer");
            pretokenizers::lookup("default")?
        }
    };

    let tokens = token_texts(md)?;
    let kinds = token_kinds(md, tokens.len())?;
    let merges = merges(md, &tokens)?;

    let bpe = BPE::builder()
        .vocab_and_merges(tokens, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| TokenizerError::library("building the BPE model", e))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pretokenizers::byte_level(spec)?));
    inner.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    add_tokens(&mut inner, md, &kinds)?;

    Ok(Vocab {
        inner,
        kinds,
        add_bos_default: spec.add_bos,
        pieces: Pieces::ByteLevel,
    })
}

/// `tokenizer.ggml.tokens` as a text → id map. Empty texts get llama.cpp's placeholder name;
/// a text that appears twice is an error (the map could hold only one of the ids).
pub(crate) fn token_texts(md: &Metadata) -> Result<BpeVocab, TokenizerError> {
    let list = md.require_str_array("tokenizer.ggml.tokens")?;
    let mut vocab = BpeVocab::with_capacity(list.len());
    for (id, text) in list.iter().enumerate() {
        let id = u32::try_from(id)
            .map_err(|_| TokenizerError::BadVocab("more than 2^32 tokens".into()))?;
        let text = if text.is_empty() {
            format!("[EMPTY_{id}]")
        } else {
            (*text).to_string()
        };
        if let Some(first) = vocab.insert(text.clone(), id) {
            return Err(TokenizerError::BadVocab(format!(
                "token \"{text}\" appears twice in tokenizer.ggml.tokens (ids {first} and {id})"
            )));
        }
    }
    Ok(vocab)
}

/// Token kinds from `tokenizer.ggml.token_type` (all normal when absent), with llama.cpp's
/// rules for tokens it knows by their text (`control_texts.rs`).
pub(crate) fn token_kinds(
    md: &Metadata,
    n_tokens: usize,
) -> Result<Vec<TokenKind>, TokenizerError> {
    let mut kinds = stored_token_kinds(md, n_tokens)?;
    let texts = md.require_str_array("tokenizer.ggml.tokens")?;
    control_texts::apply(md, &texts, &mut kinds);
    Ok(kinds)
}

/// Token kinds as `tokenizer.ggml.token_type` stores them (all normal when absent).
fn stored_token_kinds(md: &Metadata, n_tokens: usize) -> Result<Vec<TokenKind>, TokenizerError> {
    let Some(types) = md.opt_array("tokenizer.ggml.token_type")? else {
        return Ok(vec![TokenKind::Normal; n_tokens]);
    };
    if types.len() < n_tokens {
        return Err(TokenizerError::BadVocab(format!(
            "tokenizer.ggml.token_type has {} entries for {n_tokens} tokens",
            types.len()
        )));
    }
    types[..n_tokens]
        .iter()
        .enumerate()
        .map(|(id, v)| {
            v.as_i64().map(TokenKind::from_gguf).ok_or_else(|| {
                TokenizerError::BadVocab(format!(
                    "tokenizer.ggml.token_type[{id}] is a {}, not an integer",
                    v.value_type().name()
                ))
            })
        })
        .collect()
}

/// `tokenizer.ggml.merges`: lines "left right", in priority order.
fn merges(md: &Metadata, vocab: &BpeVocab) -> Result<Merges, TokenizerError> {
    let lines = md.require_array("tokenizer.ggml.merges")?;
    let mut merges = Merges::with_capacity(lines.len());
    for (index, value) in lines.iter().enumerate() {
        let bad = |line: &str, why: String| TokenizerError::BadMerge {
            index,
            line: line.to_string(),
            why,
        };
        let line = value.as_str().ok_or_else(|| {
            bad(
                "",
                format!("it is a {}, not a string", value.value_type().name()),
            )
        })?;
        // The separator is the first space after the first character: llama.cpp's rule, which
        // lets a vocabulary whose tokens hold raw spaces merge a leading " ".
        let split = line
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(i, _)| i);
        let Some(at) = split else {
            return Err(bad(line, "no space separates the two tokens".into()));
        };
        let (left, right) = (&line[..at], &line[at + 1..]);
        for part in [left, right, &format!("{left}{right}")] {
            if !vocab.contains_key(part) {
                return Err(bad(line, format!("\"{part}\" is not in the vocabulary")));
            }
        }
        merges.push((left.to_string(), right.to_string()));
    }
    Ok(merges)
}

/// Registers control and user-defined tokens as added tokens, so that their text in a prompt
/// is parsed as the token (they keep their vocabulary ids).
pub(crate) fn add_tokens(
    inner: &mut tokenizers::Tokenizer,
    md: &Metadata,
    kinds: &[TokenKind],
) -> Result<(), TokenizerError> {
    let list = md.require_str_array("tokenizer.ggml.tokens")?;
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (text, kind) in list.iter().zip(kinds) {
        if text.is_empty() || !kind.is_added() {
            continue;
        }
        if kind.is_special() {
            special.push(AddedToken::from(*text, true));
        } else {
            // Matched in the raw text, before any normalizer (llama.cpp's partition).
            user.push(AddedToken::from(*text, false).normalized(false));
        }
    }
    inner
        .add_special_tokens(special)
        .map_err(|e| TokenizerError::library("adding control tokens", e))?;
    inner
        .add_tokens(user)
        .map_err(|e| TokenizerError::library("adding user-defined tokens", e))?;
    Ok(())
}
