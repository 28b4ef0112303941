//! What the HTTP side and the engine thread say to each other: a [`Job`] goes in (a
//! prompt and one set of options per choice), [`Event`]s come back on the job's own
//! channel. When the HTTP side drops its receiver (the client went away), the engine
//! thread sees the channel closed and cancels the job's generations.

use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;
use wisp_core::generate::{GenerateOptions, StopReason};

use super::error::ApiError;

/// One request's generations.
pub struct Job {
    pub prompt: Vec<u32>,
    /// One entry per choice (`n`), each with its own seed.
    pub choices: Vec<GenerateOptions>,
    pub events: mpsc::UnboundedSender<Event>,
    /// When the request arrived, for time-to-first-token.
    pub received: Instant,
}

/// What the engine thread is told.
pub enum Command {
    Run(Job),
    /// Stop taking jobs; cancel whatever still runs at `deadline`, then stop the thread.
    Drain {
        deadline: Instant,
    },
}

/// What a job's generations did since the last event.
#[derive(Debug)]
pub enum Event {
    /// New tokens of one choice: their text (complete UTF-8 that can no longer be part of
    /// a stop string; may be empty while text is held back) and their log probabilities
    /// when the request asked for them.
    Tokens {
        choice: usize,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// One choice ended.
    ChoiceEnd {
        choice: usize,
        finish_reason: FinishReason,
    },
    /// Every choice ended: the job is over.
    Done { usage: Usage },
    /// The job failed; nothing follows.
    Failed(ApiError),
}

/// OpenAI's `finish_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, the context's end, or a generation cut short by the server (its text
    /// is incomplete, which is what clients take `length` to mean).
    Length,
}

impl From<StopReason> for FinishReason {
    fn from(reason: StopReason) -> Self {
        match reason {
            StopReason::EndOfGeneration | StopReason::StopString => FinishReason::Stop,
            StopReason::MaxTokens | StopReason::ContextFull | StopReason::Cancelled => {
                FinishReason::Length
            }
        }
    }
}

/// A sampled token's log probability and the most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The token's text on its own (a piece of a UTF-8 character shows U+FFFD).
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// (text, bytes, log probability), most likely first.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// OpenAI's `usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}
