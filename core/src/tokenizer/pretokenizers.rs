//! How byte-level BPE vocabularies split text into words before merging, by the GGUF
//! `tokenizer.ggml.pre` name.
//!
//! Each entry lists regexes applied in turn, as llama.cpp does (`llm_tokenizer_bpe`): every
//! regex splits each piece left by the previous one, and both the matches and the text between
//! them stay pieces. The regexes are llama.cpp's (which equal the `tokenizer.json` ones, with
//! `(?i:…)` contractions spelled out) so that ids match llama.cpp's exactly.

use tokenizers::SplitDelimiterBehavior;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

use super::TokenizerError;

/// One pre-tokenizer: the names that select it and what it does.
#[derive(Debug)]
pub(crate) struct PreTokenizerSpec {
    pub names: &'static [&'static str],
    pub regexes: &'static [&'static str],
    /// A word that is itself in the vocabulary becomes that token without merging (llama3).
    pub ignore_merges: bool,
    /// Whether BOS is added when the GGUF has no `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
}

/// GPT-2's split: contractions (lower case only), letters, numbers, other symbols, spaces.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's split: numbers in runs of at most three digits, newlines kept together.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split: as Llama 3's, but every digit alone.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Every digit its own piece (SmolLM, StarCoder).
const DIGITS: &str = r"\p{N}";

const fn spec(
    names: &'static [&'static str],
    regexes: &'static [&'static str],
) -> PreTokenizerSpec {
    PreTokenizerSpec {
        names,
        regexes,
        ignore_merges: false,
        add_bos: false,
    }
}

static TABLE: &[PreTokenizerSpec] = &[
    // llama.cpp's fallback when a BPE model names no pre-tokenizer.
    spec(
        &["default"],
        &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    ),
    spec(&["gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais"], &[GPT2]),
    spec(
        &[
            "smollm",
            "starcoder",
            "refact",
            "codeshell",
            "command-r",
            "exaone",
            "minerva-7b",
        ],
        &[DIGITS, GPT2],
    ),
    PreTokenizerSpec {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1"],
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    spec(&["dbrx", "smaug-bpe"], &[LLAMA3]),
    spec(
        &["qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"],
        &[QWEN2],
    ),
    spec(
        &["falcon"],
        &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
    ),
];

/// Every known pre-tokenizer (for finding the one a `tokenizer.json` uses).
pub(crate) fn all() -> &'static [PreTokenizerSpec] {
    TABLE
}

/// The pre-tokenizer a `tokenizer.ggml.pre` name selects; an unknown name is an error that
/// lists the known ones (a silent fallback would tokenize differently from llama.cpp).
pub(crate) fn lookup(name: &str) -> Result<&'static PreTokenizerSpec, TokenizerError> {
    TABLE
        .iter()
        .find(|s| s.names.contains(&name))
        .ok_or_else(|| {
            let known: Vec<&str> = TABLE.iter().flat_map(|s| s.names.iter().copied()).collect();
            TokenizerError::UnknownPreTokenizer(name.to_string(), known.join(", "))
        })
}

/// The `tokenizers` pre-tokenizer for a spec: the regex splits, then the byte-level mapping
/// (its own GPT-2 regex off: the splitting is done).
pub(crate) fn byte_level(spec: &PreTokenizerSpec) -> Result<PreTokenizerWrapper, TokenizerError> {
    let mut steps = Vec::with_capacity(spec.regexes.len() + 1);
    for regex in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::library("compiling a pre-tokenizer regex", e))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_regex_compiles() {
        for spec in TABLE {
            byte_level(spec).unwrap_or_else(|e| panic!("{:?}: {e}", spec.names));
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = TABLE.iter().flat_map(|s| s.names.iter().copied()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let err = lookup("no-such-pre").unwrap_err().to_string();
        assert!(err.contains("\"no-such-pre\""), "{err}");
        assert!(err.contains("smollm"), "{err}");
        assert!(lookup("smollm").is_ok());
        assert!(lookup("llama-bpe").unwrap().add_bos);
    }
}
