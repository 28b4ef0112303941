//! Answers from a job's events: collected into one response, or streamed as server-sent
//! events (`data: {chunk}` lines, then `data: [DONE]`) as OpenAI streams them.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::Value;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::job::{Event, Usage};
use super::response::{ChoiceResult, Header};

/// What the stream says when the engine thread went away mid-request.
fn engine_gone() -> ApiError {
    ApiError::internal("The engine stopped before the request ended")
}

/// Waits for the whole answer of a request that did not stream.
pub async fn collect(
    header: &Header,
    mut events: mpsc::UnboundedReceiver<Event>,
    n: usize,
    logprobs: bool,
) -> Result<Value, ApiError> {
    let mut choices: Vec<ChoiceResult> = (0..n)
        .map(|_| ChoiceResult {
            logprobs: logprobs.then(Vec::new),
            ..Default::default()
        })
        .collect();
    loop {
        match events.recv().await.ok_or_else(engine_gone)? {
            Event::Tokens {
                choice,
                text,
                logprobs,
            } => {
                if let Some(c) = choices.get_mut(choice) {
                    c.text.push_str(&text);
                    if let Some(all) = &mut c.logprobs {
                        all.extend(logprobs);
                    }
                }
            }
            Event::ChoiceEnd {
                choice,
                finish_reason,
            } => {
                if let Some(c) = choices.get_mut(choice) {
                    c.finish_reason = Some(finish_reason);
                }
            }
            Event::Done { usage } => return Ok(header.response(&choices, usage)),
            Event::Failed(e) => return Err(e),
        }
    }
}

/// How one request's stream goes on.
struct Streamer {
    header: Header,
    events: mpsc::UnboundedReceiver<Event>,
    include_usage: bool,
    logprobs: bool,
    /// Bytes of text sent so far per choice (offsets of the legacy logprobs).
    sent: Vec<usize>,
    /// `data:` payloads ready to go, in order.
    ready: VecDeque<String>,
    over: bool,
}

impl Streamer {
    /// Turns the next event into payloads; false once nothing more will come.
    async fn pull(&mut self) -> bool {
        if self.over {
            return false;
        }
        let event = self.events.recv().await;
        let h = &self.header;
        match event {
            Some(Event::Tokens {
                choice,
                text,
                logprobs,
            }) => {
                // Tokens that only fill the stop-string matcher's hold carry nothing
                // worth a chunk unless their logprobs were asked for.
                if !text.is_empty() || (self.logprobs && !logprobs.is_empty()) {
                    let offset = self.sent.get(choice).copied().unwrap_or(0);
                    let lp = self.logprobs.then_some(logprobs.as_slice());
                    let chunk = h.text_chunk(choice, &text, lp, offset, self.include_usage);
                    self.ready.push_back(chunk.to_string());
                    if let Some(s) = self.sent.get_mut(choice) {
                        *s += text.len();
                    }
                }
            }
            Some(Event::ChoiceEnd {
                choice,
                finish_reason,
            }) => {
                let chunk = h.finish_chunk(choice, finish_reason, self.include_usage);
                self.ready.push_back(chunk.to_string());
            }
            Some(Event::Done { usage }) => self.done(usage),
            Some(Event::Failed(e)) => self.fail(&e),
            None => self.fail(&engine_gone()),
        }
        true
    }

    fn done(&mut self, usage: Usage) {
        if self.include_usage {
            let chunk = self.header.usage_chunk(usage);
            self.ready.push_back(chunk.to_string());
        }
        self.ready.push_back("[DONE]".into());
        self.over = true;
    }

    /// A failure after the stream started: an error object in OpenAI's shape (clients
    /// raise it), and no `[DONE]`.
    fn fail(&mut self, e: &ApiError) {
        self.ready.push_back(e.body().to_string());
        self.over = true;
    }
}

/// The SSE response of a streamed request. Dropping it (the client went away) drops the
/// receiver, which the engine thread takes as a cancellation.
pub fn sse(
    header: Header,
    events: mpsc::UnboundedReceiver<Event>,
    n: usize,
    include_usage: bool,
    logprobs: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let ready = (0..n)
        .filter_map(|i| header.role_chunk(i, include_usage))
        .map(|chunk| chunk.to_string())
        .collect();
    let streamer = Streamer {
        header,
        events,
        include_usage,
        logprobs,
        sent: vec![0; n],
        ready,
        over: false,
    };
    let stream = futures_util::stream::unfold(streamer, |mut s| async move {
        loop {
            if let Some(data) = s.ready.pop_front() {
                return Some((Ok(SseEvent::default().data(data)), s));
            }
            if !s.pull().await {
                return None;
            }
        }
    });
    // Comments while a long prompt is prefilled keep proxies from closing the connection.
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::super::job::FinishReason;
    use super::super::validate::Endpoint;
    use super::*;

    fn header() -> Header {
        Header {
            endpoint: Endpoint::Chat,
            id: "chatcmpl-1".into(),
            created: 1,
            model: "m".into(),
        }
    }

    fn events() -> (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        for event in [
            Event::Tokens {
                choice: 0,
                text: "Hel".into(),
                logprobs: vec![],
            },
            Event::Tokens {
                choice: 0,
                text: String::new(),
                logprobs: vec![],
            },
            Event::Tokens {
                choice: 0,
                text: "lo".into(),
                logprobs: vec![],
            },
            Event::ChoiceEnd {
                choice: 0,
                finish_reason: FinishReason::Stop,
            },
            Event::Done {
                usage: Usage::new(4, 3, 0),
            },
        ] {
            tx.send(event).unwrap();
        }
        (tx, rx)
    }

    /// The `data:` payloads of a streamed answer, as a client reads them.
    async fn payloads(rx: mpsc::UnboundedReceiver<Event>, include_usage: bool) -> Vec<String> {
        use axum::response::IntoResponse;
        let response = sse(header(), rx, 1, include_usage, false).into_response();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(body.to_vec())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_stream_opens_with_the_role_sends_text_and_ends_with_done() {
        let (_tx, rx) = events();
        let data = runtime().block_on(payloads(rx, true));
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello");
        // The role chunk, two text chunks (the empty one is skipped), the finish, usage.
        assert_eq!(chunks.len(), 5, "{chunks:#?}");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[4]["choices"], serde_json::json!([]));
        assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
        assert!(chunks[..4].iter().all(|c| c["usage"].is_null()));
    }

    #[test]
    fn a_failure_mid_stream_is_an_error_object() {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Event::Failed(ApiError::internal("device lost")))
            .unwrap();
        let data = runtime().block_on(payloads(rx, false));
        let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert_eq!(last["error"]["message"], "device lost");
        assert!(!data.iter().any(|d| d == "[DONE]"));
    }

    #[test]
    fn collecting_joins_the_text_and_keeps_the_usage() {
        let (_tx, rx) = events();
        let v = runtime()
            .block_on(collect(&header(), rx, 1, false))
            .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "Hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 7);
        // A stream whose engine went away fails, rather than hanging.
        let (tx, rx) = mpsc::unbounded_channel::<Event>();
        drop(tx);
        let e = runtime()
            .block_on(collect(&header(), rx, 1, false))
            .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
