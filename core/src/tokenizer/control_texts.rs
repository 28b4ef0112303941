//! Tokens whose kind llama.cpp decides by their text, whatever `tokenizer.ggml.token_type`
//! says.
//!
//! llama.cpp does not trust a GGUF's token types for the tokens that end a turn or mark the
//! parts of a fill-in-the-middle prompt: when it loads a vocabulary, every token with one of
//! those texts becomes a control token (it warns "control-looking token … was not
//! control-type"). Control tokens are what a prompt's special-token parsing matches, so
//! their kind decides how a raw prompt tokenizes: Qwen2.5 stores `</s>` (id 128247) as a
//! normal token, and llama.cpp still reads `</s>` in a raw prompt as that one token.
//! A few texts are made user-defined or normal again, for the vocabularies llama.cpp
//! names. These rules apply to GGUF vocabularies only: a `tokenizer.json` says what its
//! added tokens are, and Hugging Face's tokenizer believes it.

use std::collections::{HashMap, HashSet};

use super::special::TokenKind;
use crate::gguf::Metadata;

/// Texts of the tokens llama.cpp treats as ending generation, all made control tokens
/// (its list of end-of-turn texts is part of this one); a control token with one of these
/// texts ends generation ([`SpecialTokens`](super::special::SpecialTokens)).
pub(crate) const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// A fill-in-the-middle role: llama.cpp looks its token up by text only when the GGUF names
/// none under these keys (the second is the older name).
struct FimRole {
    keys: &'static [&'static str],
    texts: &'static [&'static str],
}

const FILL_IN_THE_MIDDLE: &[FimRole] = &[
    FimRole {
        keys: &[
            "tokenizer.ggml.fim_pre_token_id",
            "tokenizer.ggml.prefix_token_id",
        ],
        texts: &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    },
    FimRole {
        keys: &[
            "tokenizer.ggml.fim_suf_token_id",
            "tokenizer.ggml.suffix_token_id",
        ],
        texts: &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    },
    FimRole {
        keys: &[
            "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.middle_token_id",
        ],
        texts: &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    },
    FimRole {
        keys: &["tokenizer.ggml.fim_pad_token_id"],
        texts: &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    },
    FimRole {
        keys: &["tokenizer.ggml.fim_rep_token_id"],
        texts: &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    },
    FimRole {
        keys: &["tokenizer.ggml.fim_sep_token_id"],
        texts: &["<|file_sep|>"],
    },
];

/// gpt-oss's message markup: user-defined, so that it is always parsed and always shown.
const ALWAYS_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Applies llama.cpp's text rules to `kinds` (one per entry of `texts`, the vocabulary in id
/// order). A vocabulary that has one role under two spellings gets both made control;
/// llama.cpp takes whichever its hash map yields first.
pub(crate) fn apply(md: &Metadata, texts: &[&str], kinds: &mut [TokenKind]) {
    let ruled: HashSet<&str> = END_OF_GENERATION
        .iter()
        .chain(FILL_IN_THE_MIDDLE.iter().flat_map(|role| role.texts))
        .chain(ALWAYS_USER_DEFINED)
        .copied()
        .collect();
    let ids: HashMap<&str, usize> = texts
        .iter()
        .enumerate()
        .filter(|(_, text)| ruled.contains(*text))
        .map(|(id, text)| (*text, id))
        .collect();
    let has = |text: &str| ids.contains_key(text);
    let mut set = |text: &str, kind: TokenKind| {
        if let Some(&id) = ids.get(text) {
            kinds[id] = kind;
        }
    };

    let mut control: Vec<&str> = END_OF_GENERATION.to_vec();
    for role in FILL_IN_THE_MIDDLE {
        let named = role.keys.iter().any(|key| {
            md.opt_u64(key)
                .ok()
                .flatten()
                .is_some_and(|id| id < texts.len() as u64)
        });
        if !named {
            control.extend_from_slice(role.texts);
        }
    }
    for text in control {
        set(text, TokenKind::Control);
    }
    for text in ALWAYS_USER_DEFINED {
        set(text, TokenKind::UserDefined);
    }
    // gpt-oss (and Solar Open) end a message with `<|end|>` but go on after it: there it is
    // markup, not the end of generation.
    if (has("<|call|>") || has("<|calls|>")) && (has("<|return|>") || has("<|flush|>")) {
        set("<|end|>", TokenKind::UserDefined);
    }
    // Gemma 4 (and PaddleOCR) write `</s>` as text.
    if has("<|tool_response>") {
        set("</s>", TokenKind::Normal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Value;

    fn kinds_after(md: &Metadata, texts: &[&str], kinds: &[TokenKind]) -> Vec<TokenKind> {
        let mut kinds = kinds.to_vec();
        apply(md, texts, &mut kinds);
        kinds
    }

    #[test]
    fn end_of_generation_texts_become_control() {
        use TokenKind::*;
        let texts = ["a", "</s>", "<|im_end|>", "<eos>", "<fim_prefix>"];
        let got = kinds_after(
            &Metadata::new(),
            &texts,
            &[Normal, Normal, Control, UserDefined, Normal],
        );
        assert_eq!(got, [Normal, Control, Control, Control, Control]);
    }

    #[test]
    fn a_named_fim_token_leaves_the_texts_alone() {
        use TokenKind::*;
        let texts = ["<fim_prefix>", "<PRE>", "<|file_sep|>"];
        let mut md = Metadata::new();
        md.insert("tokenizer.ggml.prefix_token_id", Value::U32(0));
        let got = kinds_after(&md, &texts, &[Control, Normal, Normal]);
        assert_eq!(got, [Control, Normal, Control]);
    }

    #[test]
    fn the_named_exceptions() {
        use TokenKind::*;
        let texts = ["<|end|>", "<|return|>", "<|call|>", "<|channel|>"];
        let got = kinds_after(&Metadata::new(), &texts, &[Control; 4]);
        assert_eq!(got, [UserDefined, Control, Control, UserDefined]);
        let texts = ["</s>", "<|tool_response>"];
        let got = kinds_after(&Metadata::new(), &texts, &[UserDefined, Control]);
        assert_eq!(got, [Normal, Control]);
    }
}
