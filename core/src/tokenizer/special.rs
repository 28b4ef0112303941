//! Token kinds and the special token ids a model declares.

use super::control_texts::END_OF_GENERATION;

/// What a vocabulary entry is, as GGUF's `tokenizer.ggml.token_type` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Normal,
    Unknown,
    /// A control token (`<|im_start|>`): parsed in text as one token, rendered as its text.
    Control,
    /// A token the model's authors added (`<fim prefix>`): parsed in text as one token.
    UserDefined,
    Unused,
    /// A SentencePiece byte token (`<0x0A>`).
    Byte,
}

impl TokenKind {
    /// The GGUF token type id (llama.cpp's `llama_token_type`); 0 (undefined) and unknown
    /// values count as normal tokens.
    pub(crate) fn from_gguf(ty: i64) -> TokenKind {
        match ty {
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Normal,
        }
    }

    /// The GGUF token type id, for writing `tokenizer.ggml.token_type`.
    pub(crate) fn to_gguf(self) -> i32 {
        match self {
            TokenKind::Normal => 1,
            TokenKind::Unknown => 2,
            TokenKind::Control => 3,
            TokenKind::UserDefined => 4,
            TokenKind::Unused => 5,
            TokenKind::Byte => 6,
        }
    }

    /// Whether the text of this token in a prompt is parsed as the token itself (llama.cpp's
    /// special-token partition with `parse_special`), before any pre-tokenization.
    pub(crate) fn is_added(self) -> bool {
        matches!(
            self,
            TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
        )
    }

    /// Whether the token is special (control): such tokens can end generation.
    pub(crate) fn is_special(self) -> bool {
        matches!(self, TokenKind::Control | TokenKind::Unknown)
    }
}

/// Special token ids; absent ones are `None`.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
    /// Sorted ids that end generation.
    pub end_of_generation: Vec<u32>,
}

impl SpecialTokens {
    /// Fills `end_of_generation`: EOS, EOT, EOM, and every special token whose text is one
    /// llama.cpp ends generation at ([`END_OF_GENERATION`]: GGUF files only name one EOS).
    /// `special_tokens` yields `(id, text)` of the special tokens.
    pub(crate) fn collect_end_of_generation<'a>(
        &mut self,
        special_tokens: impl Iterator<Item = (u32, &'a str)>,
    ) {
        let mut ids: Vec<u32> = [self.eos, self.eot, self.eom]
            .into_iter()
            .flatten()
            .collect();
        ids.extend(
            special_tokens
                .filter(|(_, text)| END_OF_GENERATION.contains(text))
                .map(|(id, _)| id),
        );
        ids.sort_unstable();
        ids.dedup();
        self.end_of_generation = ids;
    }

    pub(crate) fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_generation_collects_eos_and_known_texts() {
        let mut s = SpecialTokens {
            eos: Some(7),
            ..Default::default()
        };
        s.collect_end_of_generation(
            [(0, "<|endoftext|>"), (1, "<|im_start|>"), (2, "<|im_end|>")].into_iter(),
        );
        assert_eq!(s.end_of_generation, vec![0, 2, 7]);
        assert!(s.is_end_of_generation(2));
        assert!(!s.is_end_of_generation(1));
    }
}
