//! The answers in OpenAI's shapes: whole responses (`chat.completion`, `text_completion`)
//! and streamed chunks (`chat.completion.chunk`, and `text_completion` again for the
//! legacy endpoint), each built from what the engine thread reported.

use serde_json::{Value, json};

use super::job::{FinishReason, TokenLogprob, Usage};
use super::validate::Endpoint;

/// What every chunk and response of one request repeats.
#[derive(Clone, Debug)]
pub struct Header {
    pub endpoint: Endpoint,
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// One choice's whole answer.
#[derive(Clone, Debug, Default)]
pub struct ChoiceResult {
    pub text: String,
    /// `None` when the request did not ask for log probabilities.
    pub logprobs: Option<Vec<TokenLogprob>>,
    pub finish_reason: Option<FinishReason>,
}

impl Header {
    pub fn new(endpoint: Endpoint, model: String) -> Self {
        let prefix = match endpoint {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completions => "cmpl",
        };
        Header {
            endpoint,
            id: format!("{prefix}-{:016x}{:08x}", unique_id(), std::process::id()),
            created: unix_seconds(),
            model,
        }
    }

    fn object(&self, streamed: bool) -> &'static str {
        match (self.endpoint, streamed) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    fn envelope(&self, streamed: bool, choices: Vec<Value>) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object(streamed)));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("choices".into(), Value::Array(choices));
        m
    }

    /// The whole response of a request that did not stream.
    pub fn response(&self, choices: &[ChoiceResult], usage: Usage) -> Value {
        let choices = choices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let logprobs = c
                    .logprobs
                    .as_deref()
                    .map_or(Value::Null, |l| self.logprobs(l, 0));
                let finish = json!(c.finish_reason.unwrap_or(FinishReason::Length));
                match self.endpoint {
                    Endpoint::Chat => json!({
                        "index": index,
                        "message": {"role": "assistant", "content": c.text},
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    }),
                    Endpoint::Completions => json!({
                        "index": index,
                        "text": c.text,
                        "logprobs": logprobs,
                        "finish_reason": finish,
                    }),
                }
            })
            .collect();
        let mut m = self.envelope(false, choices);
        m.insert("usage".into(), json!(usage));
        Value::Object(m)
    }

    /// The chunk that opens a chat choice's stream: the assistant's role, no text yet.
    /// (The legacy endpoint has no such chunk.)
    pub fn role_chunk(&self, choice: usize, include_usage: bool) -> Option<Value> {
        (self.endpoint == Endpoint::Chat).then(|| {
            self.chunk(
                json!({
                    "index": choice,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null,
                }),
                include_usage,
            )
        })
    }

    /// A chunk with new text of one choice. `text_offset` is where the text starts in the
    /// choice's whole text (the legacy logprobs' offsets count from there).
    pub fn text_chunk(
        &self,
        choice: usize,
        text: &str,
        logprobs: Option<&[TokenLogprob]>,
        text_offset: usize,
        include_usage: bool,
    ) -> Value {
        let logprobs = logprobs.map_or(Value::Null, |l| self.logprobs(l, text_offset));
        let body = match self.endpoint {
            Endpoint::Chat => json!({
                "index": choice,
                "delta": {"content": text},
                "logprobs": logprobs,
                "finish_reason": null,
            }),
            Endpoint::Completions => json!({
                "index": choice,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": null,
            }),
        };
        self.chunk(body, include_usage)
    }

    /// The chunk that ends one choice.
    pub fn finish_chunk(&self, choice: usize, reason: FinishReason, include_usage: bool) -> Value {
        let body = match self.endpoint {
            Endpoint::Chat => json!({
                "index": choice,
                "delta": {},
                "logprobs": null,
                "finish_reason": reason,
            }),
            Endpoint::Completions => json!({
                "index": choice,
                "text": "",
                "logprobs": null,
                "finish_reason": reason,
            }),
        };
        self.chunk(body, include_usage)
    }

    /// The last chunk of a stream with `include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        let mut m = self.envelope(true, Vec::new());
        m.insert("usage".into(), json!(usage));
        Value::Object(m)
    }

    /// With `include_usage`, every chunk but the last carries `"usage": null`.
    fn chunk(&self, choice: Value, include_usage: bool) -> Value {
        let mut m = self.envelope(true, vec![choice]);
        if include_usage {
            m.insert("usage".into(), Value::Null);
        }
        Value::Object(m)
    }

    /// Log probabilities in the endpoint's form: chat's list of `{token, logprob, bytes,
    /// top_logprobs}`, or the legacy parallel arrays with text offsets.
    fn logprobs(&self, tokens: &[TokenLogprob], text_offset: usize) -> Value {
        match self.endpoint {
            Endpoint::Chat => {
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let top: Vec<Value> = t
                            .top
                            .iter()
                            .map(|(token, bytes, logprob)| {
                                json!({"token": token, "logprob": logprob, "bytes": bytes})
                            })
                            .collect();
                        json!({
                            "token": t.token,
                            "logprob": t.logprob,
                            "bytes": t.bytes,
                            "top_logprobs": top,
                        })
                    })
                    .collect();
                json!({"content": content})
            }
            Endpoint::Completions => {
                let mut offset = text_offset;
                let mut offsets = Vec::with_capacity(tokens.len());
                for t in tokens {
                    offsets.push(offset);
                    offset += t.token.len();
                }
                let top: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let map: serde_json::Map<String, Value> = t
                            .top
                            .iter()
                            .map(|(token, _, logprob)| (token.clone(), json!(logprob)))
                            .collect();
                        Value::Object(map)
                    })
                    .collect();
                json!({
                    "tokens": tokens.iter().map(|t| &t.token).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": offsets,
                })
            }
        }
    }
}

/// `GET /v1/models`.
pub fn model_list(id: &str, created: u64) -> Value {
    json!({
        "object": "list",
        "data": [{"id": id, "object": "model", "created": created, "owned_by": "wisp"}],
    })
}

pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A process-wide unique number for response ids: a counter mixed into random bits.
fn unique_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(crate::common::random_seed);
    base ^ NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(endpoint: Endpoint) -> Header {
        Header {
            endpoint,
            id: "x-1".into(),
            created: 7,
            model: "m".into(),
        }
    }

    fn token(text: &str, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            token: text.into(),
            bytes: text.as_bytes().to_vec(),
            logprob,
            top: vec![(text.into(), text.as_bytes().to_vec(), logprob)],
        }
    }

    #[test]
    fn chat_chunks_are_openais() {
        let h = header(Endpoint::Chat);
        assert_eq!(
            h.role_chunk(0, false).unwrap(),
            json!({"id": "x-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                "logprobs": null, "finish_reason": null}]})
        );
        assert_eq!(
            h.text_chunk(1, "Hi", None, 0, true),
            json!({"id": "x-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                   "choices": [{"index": 1, "delta": {"content": "Hi"}, "logprobs": null,
                                "finish_reason": null}],
                   "usage": null})
        );
        assert_eq!(
            h.finish_chunk(0, FinishReason::Stop, false)["choices"][0],
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"})
        );
        let usage = h.usage_chunk(Usage::new(5, 2, 1));
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                   "prompt_tokens_details": {"cached_tokens": 1}})
        );
    }

    #[test]
    fn completion_chunks_are_text_completions() {
        let h = header(Endpoint::Completions);
        assert!(h.role_chunk(0, false).is_none());
        let chunk = h.text_chunk(0, " Paris", None, 0, false);
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(
            chunk["choices"][0],
            json!({"index": 0, "text": " Paris", "logprobs": null, "finish_reason": null})
        );
        assert!(chunk.get("usage").is_none());
    }

    #[test]
    fn whole_responses_carry_usage_and_finish_reasons() {
        let choices = [ChoiceResult {
            text: "Paris".into(),
            logprobs: None,
            finish_reason: Some(FinishReason::Length),
        }];
        let chat = header(Endpoint::Chat).response(&choices, Usage::new(3, 1, 0));
        assert_eq!(chat["object"], "chat.completion");
        assert_eq!(
            chat["choices"][0],
            json!({"index": 0, "message": {"role": "assistant", "content": "Paris"},
                   "logprobs": null, "finish_reason": "length"})
        );
        assert_eq!(chat["usage"]["total_tokens"], 4);
        let text = header(Endpoint::Completions).response(&choices, Usage::new(3, 1, 0));
        assert_eq!(text["object"], "text_completion");
        assert_eq!(text["choices"][0]["text"], "Paris");
    }

    #[test]
    fn logprobs_take_each_endpoints_form() {
        let tokens = [token(" Pa", -0.5), token("ris", -0.25)];
        let chunk = header(Endpoint::Chat).text_chunk(0, " Paris", Some(&tokens), 0, false);
        let content = &chunk["choices"][0]["logprobs"]["content"];
        assert_eq!(content[0]["token"], " Pa");
        assert_eq!(content[1]["logprob"], -0.25);
        assert_eq!(content[0]["bytes"], json!([32, 80, 97]));
        assert_eq!(content[1]["top_logprobs"][0]["token"], "ris");
        let chunk = header(Endpoint::Completions).text_chunk(0, " Paris", Some(&tokens), 4, false);
        let legacy = &chunk["choices"][0]["logprobs"];
        assert_eq!(legacy["tokens"], json!([" Pa", "ris"]));
        assert_eq!(legacy["token_logprobs"], json!([-0.5, -0.25]));
        assert_eq!(legacy["text_offset"], json!([4, 7]));
        assert_eq!(legacy["top_logprobs"][1], json!({"ris": -0.25}));
    }

    #[test]
    fn ids_differ() {
        let a = Header::new(Endpoint::Chat, "m".into());
        let b = Header::new(Endpoint::Chat, "m".into());
        assert_ne!(a.id, b.id);
        assert!(a.id.starts_with("chatcmpl-"));
    }
}
