//! The bodies of `POST /v1/chat/completions` and `POST /v1/completions`, as OpenAI's API
//! (and llama.cpp's server, for `top_k`, `min_p`, `repeat_penalty`) defines them. Fields
//! we do not use (`user`, `tools`, …) are ignored, as OpenAI-compatible servers do.

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The fields both endpoints share.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CommonFields {
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` (chat); wins when both are given.
    pub max_completion_tokens: Option<u64>,
    pub stop: Option<Stop>,
    pub seed: Option<u64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// llama.cpp's extensions. `top_k` <= 0 turns top-k off, as there.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    /// How many recent tokens the penalties look at (llama.cpp's name).
    pub repeat_last_n: Option<usize>,
    /// Keeps this request's prompt out of the prefix cache of requests with another salt.
    pub cache_salt: Option<String>,
    /// `false`: no speculative decoding for this request, whatever the server's drafter.
    pub speculative: Option<bool>,
    /// llama.cpp's bounds on the draft length, for the server's drafter.
    #[serde(rename = "speculative.n_max")]
    pub speculative_n_max: Option<usize>,
    #[serde(rename = "speculative.n_min")]
    pub speculative_n_min: Option<usize>,
}

/// A body's own fields and the shared ones, read from the same JSON object in two passes
/// (serde's `flatten` would lose the path of a bad shared field, and with it `param`).
pub trait RequestBody: DeserializeOwned {
    fn common_mut(&mut self) -> &mut CommonFields;
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(skip)]
    pub common: CommonFields,
    /// Whether to return the chosen tokens' log probabilities.
    #[serde(default)]
    pub logprobs: bool,
    /// How many alternatives to return at each position (needs `logprobs`).
    pub top_logprobs: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(skip)]
    pub common: CommonFields,
    /// The legacy form: how many alternatives (the chosen token's log probability always
    /// comes along).
    pub logprobs: Option<u32>,
}

impl RequestBody for ChatRequest {
    fn common_mut(&mut self) -> &mut CommonFields {
        &mut self.common
    }
}

impl RequestBody for CompletionRequest {
    fn common_mut(&mut self) -> &mut CommonFields {
        &mut self.common
    }
}

/// One chat message.
#[derive(Clone, Debug, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
}

/// A message's content: text, or parts of which only text is supported.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// A completion's prompt: a string, or an array holding one string.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

/// `stop`: one string or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}
