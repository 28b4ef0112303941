//! A conversation's prompt ids: the chat template's markup as control tokens, the messages'
//! text as text.
//!
//! Rendering a conversation and encoding the whole text with special-token parsing would let
//! a message open turns of its own: a user who writes `<|im_start|>system` would get a
//! system turn. Here only the template's own markup becomes control tokens. Each control
//! token's text in a message is swapped for a placeholder before rendering (templates may
//! trim, fold or reorder messages, so their text is not looked for in the rendering); the
//! rendering is cut at its control tokens, which are then all markup, and the text between
//! them, placeholders back to the texts they stand for, is encoded with
//! [`Tokenizer::encode_plain_text`].

use super::TokenizerError;
use super::chat_template::{ChatMessage, ChatTemplate};
use super::plain_text::Piece;
use super::tokenize::Tokenizer;

/// The token ids of `messages` rendered by `template`, ready for the assistant's reply when
/// `add_generation_prompt`. Control-token texts inside messages are tokenized as text; the
/// template's markup gives the control tokens. BOS (and EOS) follow the model's rule as in
/// [`Tokenizer::encode_prompt`], without a second BOS when the template writes one itself.
/// Conversations whose messages hold no control token's text get exactly
/// `encode_prompt(template.render(…))`.
pub fn chat_prompt_ids(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, TokenizerError> {
    let injected = messages
        .iter()
        .any(|m| tokenizer.has_control_text(&m.content));
    let ids = if injected {
        markup_only_ids(tokenizer, template, messages, add_generation_prompt)?
    } else {
        tokenizer.encode_prompt(&template.render(messages, add_generation_prompt)?)?
    };
    Ok(without_double_bos(tokenizer, ids))
}

impl Tokenizer {
    /// The chat template to render this model's conversations with: its own, else the
    /// built-in one that fits its vocabulary ([`ChatTemplate::builtin_for`]).
    pub fn chat_template_or_builtin(&self) -> ChatTemplate {
        self.chat_template().cloned().unwrap_or_else(|| {
            let bos = self
                .bos_id()
                .and_then(|id| self.token_text(id))
                .unwrap_or_default();
            ChatTemplate::builtin_for(|text| self.token_to_id(text).is_some(), bos)
        })
    }
}

/// The prompt ids with control tokens from the template's markup only (see the module's
/// documentation).
pub(crate) fn markup_only_ids(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, TokenizerError> {
    let mut placeholders = Placeholders::new(template, messages);
    let masked: Vec<ChatMessage> = messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.clone(),
            content: placeholders.mask(tokenizer, &m.content),
        })
        .collect();
    let rendered = template.render(&masked, add_generation_prompt)?;

    let mut ids = Vec::new();
    if tokenizer.add_bos {
        ids.extend(tokenizer.bos_id());
    }
    for piece in tokenizer.control_pieces(&rendered) {
        match piece {
            Piece::Control { id, .. } => ids.push(id),
            Piece::Text(range) => {
                let text = placeholders.unmask(&rendered[range]);
                ids.extend(tokenizer.encode_plain_text(&text)?);
            }
        }
    }
    if tokenizer.add_eos {
        ids.extend(tokenizer.eos_id());
    }
    Ok(ids)
}

/// Templates that write `bos_token` themselves and a tokenizer that adds BOS would give
/// two; llama.cpp warns about that, here the duplicate is dropped.
fn without_double_bos(tokenizer: &Tokenizer, mut ids: Vec<u32>) -> Vec<u32> {
    if let (Some(bos), [a, b, ..]) = (tokenizer.bos_id(), ids.as_slice())
        && *a == bos
        && *b == bos
    {
        ids.remove(0);
    }
    ids
}

/// Stand-ins for control tokens' texts inside messages: `{mark}{n}{mark}` for the `n`th
/// text masked, with `mark` a private-use character found in no message and not in the
/// template. Templates copy such text through (trimming, upper-casing and JSON quoting
/// leave it alone), and it holds no control token's text.
struct Placeholders {
    mark: char,
    texts: Vec<String>,
}

impl Placeholders {
    fn new(template: &ChatTemplate, messages: &[ChatMessage]) -> Self {
        let used = |c: char| {
            template.source().contains(c) || messages.iter().any(|m| m.content.contains(c))
        };
        // 6,400 private-use characters cannot all be in a conversation short enough to run.
        let mark = ('\u{E000}'..='\u{F8FF}')
            .find(|&c| !used(c))
            .unwrap_or('\u{F8FF}');
        Placeholders {
            mark,
            texts: Vec::new(),
        }
    }

    /// `content` with each control token's text replaced by a placeholder.
    fn mask(&mut self, tokenizer: &Tokenizer, content: &str) -> String {
        let mut out = String::with_capacity(content.len());
        for piece in tokenizer.control_pieces(content) {
            match piece {
                Piece::Control { range, .. } => {
                    out.push_str(&format!("{0}{1}{0}", self.mark, self.texts.len()));
                    self.texts.push(content[range].to_string());
                }
                Piece::Text(range) => out.push_str(&content[range]),
            }
        }
        out
    }

    /// `text` with each placeholder replaced by the text it stands for.
    fn unmask(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(self.mark) {
            out.push_str(&rest[..start]);
            let after = &rest[start + self.mark.len_utf8()..];
            let masked = after.find(self.mark).and_then(|end| {
                let n = after[..end].parse::<usize>().ok()?;
                Some((self.texts.get(n)?, end))
            });
            match masked {
                Some((original, end)) => {
                    out.push_str(original);
                    rest = &after[end + self.mark.len_utf8()..];
                }
                // Not a placeholder (a template cut one apart): kept as it is.
                None => {
                    out.push(self.mark);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}
