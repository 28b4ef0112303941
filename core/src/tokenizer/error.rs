//! The tokenizer module's error type. Every variant names what was wrong and where.

use crate::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type (the GGUF error names the key).
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    /// A vocabulary kind or tokenizer feature Wisp does not implement yet.
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    #[error("unknown pre-tokenizer \"{0}\" (tokenizer.ggml.pre); Wisp knows: {1}")]
    UnknownPreTokenizer(String, String),
    #[error("bad merge line {index} \"{line}\" in tokenizer.ggml.merges: {why}")]
    BadMerge {
        index: usize,
        line: String,
        why: String,
    },
    #[error("invalid vocabulary: {0}")]
    BadVocab(String),
    #[error("token id {id} is outside the vocabulary ({vocab_size} tokens)")]
    UnknownTokenId { id: u32, vocab_size: usize },
    /// An error from the `tokenizers` crate, with what we were doing when it happened.
    #[error("{context}: {message}")]
    Library {
        context: &'static str,
        message: String,
    },
    #[error("invalid tokenizer.json or tokenizer_config.json: {0}")]
    BadJson(String),
    #[error("chat template syntax error at line {line}: {message}")]
    TemplateSyntax { line: usize, message: String },
    #[error("chat template error{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    TemplateRender {
        line: Option<usize>,
        message: String,
    },
    /// The template called `raise_exception(message)`, e.g. on a role it does not support.
    #[error("the chat template raised an exception{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    TemplateRaised {
        line: Option<usize>,
        message: String,
    },
}

impl TokenizerError {
    pub(crate) fn library(context: &'static str, err: impl std::fmt::Display) -> Self {
        TokenizerError::Library {
            context,
            message: err.to_string(),
        }
    }
}
