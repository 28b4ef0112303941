//! [`StreamDecoder`]: generated tokens to text, one token at a time.
//!
//! A byte-level token can hold part of a multi-byte character (an emoji is often two or three
//! tokens), so text is emitted only once its characters are complete.

use super::TokenizerError;
use super::tokenize::{Pieces, Tokenizer};

/// Decodes tokens as they are generated; the concatenation of everything [`push`](Self::push)
/// and [`flush`](Self::flush) return equals [`Tokenizer::decode`] of all the ids.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Byte-level: bytes of a character that later tokens complete.
    pending: Vec<u8>,
    /// Other decoders: the ids whose text was last emitted (context for the decoder) followed
    /// by ids not emitted yet.
    ids: Vec<u32>,
    /// How many of `ids` are context, and the text they decode to.
    context_len: usize,
    context_text: String,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            pending: Vec::new(),
            ids: Vec::new(),
            context_len: 0,
            context_text: String::new(),
        }
    }

    /// Adds one token; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        match self.tokenizer.pieces() {
            Pieces::ByteLevel => {
                self.pending
                    .extend_from_slice(&self.tokenizer.token_bytes(id)?);
                Ok(non_empty(take_complete_utf8(&mut self.pending)))
            }
            Pieces::Library => self.push_library(id),
        }
    }

    /// The text held back (an incomplete character, shown as U+FFFD), at the end of a stream.
    pub fn flush(&mut self) -> Result<Option<String>, TokenizerError> {
        match self.tokenizer.pieces() {
            Pieces::ByteLevel => {
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                Ok(non_empty(text))
            }
            Pieces::Library => {
                let text = self.tokenizer.decode(&self.ids)?;
                let new = text
                    .get(self.context_text.len()..)
                    .unwrap_or_default()
                    .to_string();
                self.ids.clear();
                self.context_len = 0;
                self.context_text.clear();
                Ok(non_empty(new))
            }
        }
    }

    /// Decoders such as SentencePiece's change a token's text by its neighbours (the first
    /// `▁` of a text is dropped), so the new ids are decoded after the previous ones and only
    /// the added text is emitted. A trailing U+FFFD may be an incomplete character: wait.
    fn push_library(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        if text.len() <= self.context_text.len()
            || text.ends_with('\u{FFFD}')
            || !text.starts_with(&self.context_text)
        {
            return Ok(None);
        }
        let new = text[self.context_text.len()..].to_string();
        // The ids just emitted become the context for the next ones.
        self.ids.drain(..self.context_len);
        self.context_len = self.ids.len();
        self.context_text = self.tokenizer.decode(&self.ids)?;
        Ok(Some(new))
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

/// Removes and returns the longest prefix of `buf` that is complete UTF-8, keeping an
/// incomplete character at the end. Invalid bytes become U+FFFD, as in
/// `String::from_utf8_lossy`, so the pieces join up to the lossy decoding of all the bytes.
fn take_complete_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut start = 0;
    while start < buf.len() {
        match std::str::from_utf8(&buf[start..]) {
            Ok(text) => {
                out.push_str(text);
                start = buf.len();
            }
            Err(e) => {
                let valid = start + e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&buf[start..valid]));
                match e.error_len() {
                    // The bytes at the end may start a character the next token completes.
                    None => {
                        start = valid;
                        break;
                    }
                    Some(n) => {
                        out.push('\u{FFFD}');
                        start = valid + n;
                    }
                }
            }
        }
    }
    buf.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            out.push(take_complete_utf8(&mut buf));
        }
        (out, buf)
    }

    #[test]
    fn holds_back_a_split_character() {
        let smile = "😀".as_bytes();
        let (out, rest) = feed(&[b"a", &smile[..1], &smile[1..3], &smile[3..], b"b"]);
        assert_eq!(out, ["a", "", "", "😀", "b"]);
        assert!(rest.is_empty());
    }

    #[test]
    fn invalid_bytes_match_lossy_decoding() {
        let chunks: &[&[u8]] = &[b"x\xff", b"\xe4\xbd", b"y", b"\xe4"];
        let (out, rest) = feed(chunks);
        let joined: String = out.concat() + &String::from_utf8_lossy(&rest);
        assert_eq!(joined, String::from_utf8_lossy(&chunks.concat()));
        assert_eq!(rest, b"\xe4");
    }
}
