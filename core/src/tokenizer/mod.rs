//! Tokenizers built from a GGUF vocabulary or a `tokenizer.json`, and chat templates.
//!
//! The vocabulary itself runs on the `tokenizers` crate; this module builds it from GGUF
//! metadata the way llama.cpp reads it (one file per vocabulary kind: `bpe.rs` for byte-level
//! BPE, with the `pretokenizers.rs` table), and adds what llama.cpp does around it: special
//! tokens parsed in prompts, the BOS rule, end-of-generation tokens, and byte-exact streaming.
//! No filesystem access: callers pass metadata, bytes or strings.

mod bpe;
mod byte_level;
mod chat_prompt;
mod chat_template;
mod control_texts;
mod error;
mod gguf;
mod hf_json;
mod plain_text;
mod pretokenizers;
mod special;
mod spm;
mod stream;
mod to_gguf;
mod to_hf;
mod tokenize;

#[cfg(test)]
mod model_cache_tests;
#[cfg(test)]
mod tests;

pub use chat_prompt::chat_prompt_ids;
pub use chat_template::{ChatMessage, ChatTemplate};
pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use to_gguf::gguf_metadata_from_json;
pub use tokenize::Tokenizer;
