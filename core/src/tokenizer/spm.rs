//! SentencePiece vocabularies from GGUF (`tokenizer.ggml.model = "llama"`): Llama 2,
//! Mistral, Gemma.
//!
//! llama.cpp tokenizes these by repeatedly merging the adjacent pair of pieces whose
//! concatenation is the vocabulary token with the highest score (leftmost first), with
//! characters outside the vocabulary spelled as `<0xXX>` byte tokens. That is a BPE whose
//! merges are ranked by the merged token's score, which is how this builds it: every
//! split of every token into two vocabulary tokens becomes a merge, best score first.
//! Spaces are written `▁` (and one is prepended when `add_space_prefix` says so).

use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Merges};
use tokenizers::normalizers::{
    NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence,
};

use super::TokenizerError;
use super::bpe::{add_tokens, token_kinds, token_texts};
use super::gguf::Vocab;
use super::special::TokenKind;
use super::tokenize::Pieces;
use crate::gguf::Metadata;

const SPACE: &str = "\u{2581}";

/// Builds the SentencePiece tokenizer a GGUF file describes.
pub(crate) fn from_gguf(md: &Metadata) -> Result<Vocab, TokenizerError> {
    let vocab = token_texts(md)?;
    let kinds = token_kinds(md, vocab.len())?;
    let scores = scores(md, kinds.len())?;
    let mut by_id: Vec<&str> = vec![""; kinds.len()];
    for (text, &id) in &vocab {
        by_id[id as usize] = text;
    }
    let merges = merges_by_score(&vocab, &by_id, &kinds, &scores);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.clone(), merges)
        .byte_fallback(true)
        .build()
        .map_err(|e| TokenizerError::library("building the SentencePiece model", e))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);

    let space_prefix = md
        .opt_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| TokenizerError::library("building the space rule", e))
    };
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        normalizers.push(Prepend::new(SPACE.to_string()).into());
    }
    normalizers.push(replace(" ", SPACE)?.into());
    inner
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| TokenizerError::library("setting the space rule", e))?;

    let mut decoders: Vec<DecoderWrapper> = vec![
        replace(SPACE, " ")?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    add_tokens(&mut inner, md, &kinds)?;

    Ok(Vocab {
        inner,
        kinds,
        add_bos_default: true,
        pieces: Pieces::Library,
    })
}

/// `tokenizer.ggml.scores`, one per token.
fn scores(md: &Metadata, n_tokens: usize) -> Result<Vec<f32>, TokenizerError> {
    let values = md.require_array("tokenizer.ggml.scores")?;
    if values.len() != n_tokens {
        return Err(TokenizerError::BadVocab(format!(
            "tokenizer.ggml.scores has {} entries for {n_tokens} tokens",
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(id, v)| {
            v.as_f64().map(|s| s as f32).ok_or_else(|| {
                TokenizerError::BadVocab(format!(
                    "tokenizer.ggml.scores[{id}] is a {}, not a number",
                    v.value_type().name()
                ))
            })
        })
        .collect()
}

/// Every way to make a token from two vocabulary tokens, ranked by the made token's
/// score (highest first; equal scores by id). Byte, control and unused tokens are never
/// made by merging.
fn merges_by_score(
    vocab: &tokenizers::models::bpe::Vocab,
    by_id: &[&str],
    kinds: &[TokenKind],
    scores: &[f32],
) -> Merges {
    let mut ranked: Vec<(f32, u32, usize)> = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (id, text) in by_id.iter().enumerate() {
        if !matches!(kinds[id], TokenKind::Normal | TokenKind::UserDefined) {
            continue;
        }
        for (at, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(at);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                ranked.push((scores[id], id as u32, pairs.len()));
                pairs.push((left.to_string(), right.to_string()));
            }
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut slots: Vec<Option<(String, String)>> = pairs.into_iter().map(Some).collect();
    ranked
        .into_iter()
        .filter_map(|(_, _, i)| slots[i].take())
        .collect()
}
