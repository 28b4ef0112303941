//! `wisp serve` over plain HTTP on loopback: the endpoints, their answers next to the CLI's
//! for the same greedy request, streaming, every refusal with its status and OpenAI-shaped
//! error, the API key, the bounded queue, and the drain on SIGTERM.
//!
//! Each test starts its own server on a free port (`--port 0`) and waits for its
//! `listening on` line, then for /health. Generations are kept short (lavapipe runs the
//! default model at a few tokens per second on a shared machine).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wisp_tests::serve::ServeProcess;
use wisp_tests::wisp_cli::{chat_reply, wisp};

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const CTX: &str = "512";
const QUESTION: &str = "What is the capital of France?";
const CAPITAL: &str = "The capital of France is";
/// How long a server may take to start and load the model.
const STARTUP: Duration = Duration::from_secs(180);

fn model() -> String {
    wisp_tests::model_path(MODEL).display().to_string()
}

/// A running `wisp serve`, stopped (killed) when dropped.
struct Server {
    process: ServeProcess,
    base: String,
    agent: ureq::Agent,
}

/// A response: status, the headers the tests read, and the body.
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts an OpenAI-shaped error with this status (and param, when given).
    fn assert_error(&self, status: u16, param: Option<&str>) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        let error = &v["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(error["type"].is_string(), "{v}");
        assert!(
            error.get("param").is_some() && error.get("code").is_some(),
            "{v}"
        );
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{v}");
        }
        v
    }
}

impl Server {
    /// Starts `wisp serve -m MODEL --port 0 --ctx 512 EXTRA` and waits until it is ready.
    fn start(extra: &[&str]) -> Server {
        let m = model();
        let mut args = vec!["-m", &m, "--ctx", CTX];
        args.extend_from_slice(extra);
        let process = ServeProcess::spawn(&args, STARTUP);
        let deadline = Instant::now() + STARTUP;
        assert_ne!(process.port(), 0, "--port 0 must print the real port");
        assert!(
            process.log().contains("listening on http://127.0.0.1:"),
            "loopback by default: {}",
            process.log()
        );
        let base = process.base();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let server = Server {
            process,
            base,
            agent,
        };
        loop {
            let health = server.get("/health");
            if health.status == 200 {
                assert_eq!(health.json(), json!({"status": "ok"}));
                break;
            }
            // Until the model is loaded.
            assert_eq!(health.status, 503, "{}", health.body);
            assert_eq!(health.json(), json!({"status": "loading"}));
            assert!(Instant::now() < deadline, "/health never said ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn get(&self, path: &str) -> Reply {
        let response = self.agent.get(format!("{}{path}", self.base)).call();
        reply(response)
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        self.post_with(path, body, None)
    }

    fn post_with(&self, path: &str, body: &str, key: Option<&str>) -> Reply {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        reply(request.send(body))
    }

    /// A POST that announces a 5 MiB body and sends none of it (a client sending it all
    /// would race the server's early answer and may see its connection reset).
    fn oversized_post(&self, path: &str) -> Reply {
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect");
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            5 << 20
        )
        .expect("send the head");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a timeout");
        let mut response = String::new();
        // The server may close without reading the body it refused: what came is enough.
        let _ = stream.read_to_string(&mut response);
        let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        Reply {
            status,
            retry_after: None,
            body: body.to_string(),
        }
    }

    /// Starts a streamed POST with an API key; the lines of its body, read as they come.
    /// Dropping the iterator hangs up.
    fn stream_with_key(&self, path: &str, body: &str, key: &str) -> impl Iterator<Item = String> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {key}"))
            .send(body)
            .expect("an HTTP response");
        assert_eq!(response.status().as_u16(), 200);
        BufReader::new(response.into_body().into_reader())
            .lines()
            .map_while(Result::ok)
    }

    fn chat(&self, body: Value) -> Reply {
        self.post("/v1/chat/completions", &body.to_string())
    }

    fn sigterm(&self) {
        self.process.sigterm();
    }

    /// Waits for the process to end.
    fn wait_exit(mut self) -> ExitStatus {
        self.process
            .wait_exit(Duration::from_secs(60))
            .expect("wisp serve did not exit")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server must never panic, whatever it was sent.
        let log = self.process.log();
        let panicked: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).collect();
        if !std::thread::panicking() {
            assert!(panicked.is_empty(), "wisp serve panicked: {panicked:?}");
        }
    }
}

fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("an HTTP response");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Reply {
        status: response.status().as_u16(),
        retry_after,
        body: response.body_mut().read_to_string().expect("a text body"),
    }
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<&str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

/// `wisp chat` answering `question` greedily with at most `n` tokens: the reply.
fn cli_chat(question: &str, n: &str) -> String {
    let m = model();
    chat_reply(&["-m", &m, "--temp", "0", "-n", n, "--ctx", CTX], question)
}

fn greedy_chat(max_tokens: u32) -> Value {
    json!({
        "messages": [{"role": "user", "content": QUESTION}],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

#[test]
fn the_endpoints_answer_as_the_cli_does() {
    let server = Server::start(&[]);
    let models = server.get("/v1/models");
    assert_eq!(models.status, 200, "{}", models.body);
    let models = models.json();
    assert_eq!(models["object"], "list");
    let id = models["data"][0]["id"]
        .as_str()
        .expect("a model id")
        .to_string();
    assert_eq!(id, "SmolLM2-135M-Instruct.Q4_1");

    // A greedy chat completion says what `wisp chat` says.
    let mut request = greedy_chat(12);
    request["model"] = json!(id);
    let whole = server.chat(request.clone());
    assert_eq!(whole.status, 200, "{}", whole.body);
    let whole = whole.json();
    assert_eq!(whole["object"], "chat.completion");
    let choice = &whole["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert_eq!(text, cli_chat(QUESTION, "12"));
    assert!(text.contains("Paris"), "{text:?}");
    assert!(matches!(
        choice["finish_reason"].as_str(),
        Some("stop" | "length")
    ));
    let usage = &whole["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().expect("prompt_tokens"),
        usage["completion_tokens"]
            .as_u64()
            .expect("completion_tokens"),
    );
    assert!(prompt > 0 && (1..=12).contains(&completion), "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));
    assert!(
        usage["prompt_tokens_details"]["cached_tokens"].is_u64(),
        "{usage}"
    );

    // Streamed, the deltas add up to the same text, and the stream ends with [DONE].
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let streamed = server.chat(request);
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    let data = sse_data(&streamed.body);
    assert_eq!(data.last(), Some(&"[DONE]"), "{}", streamed.body);
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("a JSON chunk"))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let deltas: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(deltas, text);
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .expect("a finish_reason");
    assert_eq!(finish, choice["finish_reason"]);
    let last = chunks.last().expect("a usage chunk");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"]["completion_tokens"].as_u64(),
        Some(completion)
    );

    // A raw completion continues the prompt as `wisp generate` does.
    let m = model();
    let cli = wisp(&[
        "generate", "-m", &m, "-p", CAPITAL, "-n", "6", "--temp", "0", "--ctx", CTX, "--json",
    ])
    .json();
    let completion = server.post(
        "/v1/completions",
        &json!({"prompt": [CAPITAL], "temperature": 0, "max_tokens": 6, "logprobs": 2}).to_string(),
    );
    assert_eq!(completion.status, 200, "{}", completion.body);
    let completion = completion.json();
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(completion["choices"][0]["text"], cli["text"]);
    assert_eq!(completion["usage"]["prompt_tokens"], 5);
    let logprobs = &completion["choices"][0]["logprobs"];
    assert_eq!(logprobs["tokens"][0], " Paris", "{logprobs}");
    assert!(
        logprobs["token_logprobs"][0]
            .as_f64()
            .is_some_and(|l| l <= 0.0),
        "{logprobs}"
    );

    // A stop string ends the text before it, as `stop`.
    let stopped = server.post(
        "/v1/completions",
        &json!({"prompt": CAPITAL, "temperature": 0, "max_tokens": 8, "stop": ["."]}).to_string(),
    );
    let stopped = stopped.json();
    assert_eq!(stopped["choices"][0]["text"], " Paris", "{stopped}");
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop", "{stopped}");

    // Choice i of a seeded request samples with seed + i.
    let sampled = |seed: u64, n: u32| {
        let body = json!({"prompt": CAPITAL, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                          "min_p": 0, "max_tokens": 8, "seed": seed, "n": n});
        let r = server.post("/v1/completions", &body.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["choices"]
            .as_array()
            .expect("choices")
            .iter()
            .map(|c| c["text"].as_str().expect("text").to_string())
            .collect::<Vec<_>>()
    };
    let pair = sampled(7, 2);
    assert_eq!(pair.len(), 2);
    assert_eq!(sampled(8, 1), pair[1..]);

    refusals(&server, &id);

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    for family in [
        "wisp_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 3",
        "wisp_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}",
        "wisp_generated_tokens_total",
        "wisp_preemptions_total",
        "wisp_queue_depth",
        "wisp_running",
        "wisp_kv_blocks_used",
        "wisp_kv_blocks_free",
        "wisp_kv_blocks_cached",
        "wisp_time_to_first_token_seconds_count",
        "wisp_inter_token_latency_seconds_count",
        "wisp_batch_size_count",
    ] {
        assert!(
            metrics.body.contains(family),
            "no {family} in:\n{}",
            metrics.body
        );
    }
}

/// Every bad request gets its status and an OpenAI error naming the field, and runs nothing.
fn refusals(server: &Server, id: &str) {
    let chat = "/v1/chat/completions";
    let user = json!([{"role": "user", "content": "Hi"}]);
    server
        .post(chat, "{\"messages\": [")
        .assert_error(400, None);
    server.post(chat, "{}").assert_error(400, Some("messages"));
    server
        .post(chat, &json!({"messages": "Hi"}).to_string())
        .assert_error(400, Some("messages"));
    server
        .post(
            chat,
            &json!({"messages": user, "temperature": "hot"}).to_string(),
        )
        .assert_error(400, Some("temperature"));
    for (field, value) in [
        ("temperature", json!(-1)),
        ("temperature", json!(2.5)),
        ("top_p", json!(0)),
        ("top_p", json!(1.5)),
        ("n", json!(0)),
        ("n", json!(17)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(-5)),
    ] {
        let mut body = json!({"messages": user});
        body[field] = value;
        server.chat(body).assert_error(400, Some(field));
    }
    server
        .chat(json!({"messages": user, "logprobs": true, "top_logprobs": 21}))
        .assert_error(400, Some("top_logprobs"));
    server
        .chat(json!({"messages": []}))
        .assert_error(400, Some("messages"));
    server
        .chat(json!({"messages": [{"role": "user"}]}))
        .assert_error(400, Some("messages[0].content"));
    // Over the context: refused before any work, saying why.
    let over = server.chat(json!({"messages": user, "max_tokens": 100_000}));
    let v = over.assert_error(400, Some("max_tokens"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("context"),
        "{v}"
    );
    // A model that is not ours.
    let v = server
        .chat(json!({"model": "gpt-4o", "messages": user}))
        .assert_error(404, Some("model"));
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(
        server
            .chat(json!({"model": id, "messages": user, "max_tokens": 1}))
            .status,
        200
    );
    // Too large a body: refused from its Content-Length, before it is read.
    server
        .oversized_post("/v1/completions")
        .assert_error(413, None);
    // A completion's prompt is one string.
    server
        .post(
            "/v1/completions",
            &json!({"prompt": ["a", "b"]}).to_string(),
        )
        .assert_error(400, Some("prompt"));
    server.get("/v1/nothing").assert_error(404, None);
}

#[test]
fn the_api_key_guards_v1_and_a_full_queue_is_429() {
    let server = Server::start(&["--api-key", "sekret", "--parallel", "1", "--max-queue", "1"]);
    // /health and /metrics stay open.
    assert_eq!(server.get("/metrics").status, 200);
    server.get("/v1/models").assert_error(401, None);
    let body = greedy_chat(1).to_string();
    let chat = "/v1/chat/completions";
    server
        .post_with(chat, &body, Some("wrong"))
        .assert_error(401, None);
    server.post(chat, &body).assert_error(401, None);
    assert_eq!(server.post_with(chat, &body, Some("sekret")).status, 200);

    // One generation runs (--parallel 1), one waits (--max-queue 1): the next request is
    // turned away with Retry-After. Both are long, and cancelled by hanging up once seen.
    let long = json!({
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 400,
        "stream": true,
    })
    .to_string();
    let mut running = server.stream_with_key(chat, &long, "sekret");
    // Its first token: it runs, so the next one waits.
    let first = running
        .by_ref()
        .find(|line| line.contains("\"content\":\"") && !line.contains("\"role\""));
    assert!(first.is_some(), "the first request streamed no text");
    let waiting = server.stream_with_key(chat, &long, "sekret");
    let refused = server.post_with(chat, &greedy_chat(1).to_string(), Some("sekret"));
    let v = refused.assert_error(429, None);
    assert_eq!(refused.retry_after.as_deref(), Some("1"), "{v}");
    drop((running, waiting));
    // More choices than may ever wait is not a matter of waiting.
    let two = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "n": 2});
    server
        .post_with(chat, &two.to_string(), Some("sekret"))
        .assert_error(400, Some("n"));
    // The hung-up requests were cancelled: their places came back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server.post_with(chat, &greedy_chat(1).to_string(), Some("sekret"));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(Instant::now() < deadline, "the queue never emptied");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigterm_drains_and_exits_0() {
    let server = Server::start(&["--drain-s", "3"]);
    // A generation that runs past the drain deadline: cut short, but answered.
    let (agent, url) = (
        server.agent.clone(),
        format!("{}/v1/completions", server.base),
    );
    let running = std::thread::spawn(move || {
        let body = json!({"prompt": "Once upon a time", "temperature": 0, "max_tokens": 400});
        reply(
            agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    server.sigterm();
    // From now on new requests are refused.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.get("/health").status != 503 {
        assert!(Instant::now() < deadline, "/health did not say draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.get("/v1/models").assert_error(503, None);
    let cut = running.join().expect("the running request");
    assert_eq!(cut.status, 200, "{}", cut.body);
    let cut = cut.json();
    assert_eq!(cut["choices"][0]["finish_reason"], "length", "{cut}");
    assert!(
        cut["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n < 400),
        "{cut}"
    );
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "wisp serve exited with {status}");
}

/// With a server-wide drafter, requests speculate (batched with the rest), answer with
/// exactly what plain decoding gives, and /metrics counts the drafts; a request may turn
/// it off or bound the draft length, and bounds out of range are refused by name.
#[test]
fn a_server_wide_drafter_speculates_per_request() {
    let server = Server::start(&["--lookup", "3", "--parallel", "2"]);
    let prompt = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n\
                  # The same two functions again:\ndef add(a, b):";
    let completion = |extra: Value| -> Value {
        let mut body = json!({"prompt": prompt, "max_tokens": 40, "temperature": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = server.post("/v1/completions", &body.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let plain = completion(json!({"speculative": false}));
    let drafted = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("wisp_draft_tokens_total "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no draft counter in:\n{metrics}"))
    };
    assert_eq!(
        drafted(&server.get("/metrics").body),
        0,
        "speculation was off"
    );
    let speculative = completion(json!({}));
    assert_eq!(
        speculative["choices"][0]["text"], plain["choices"][0]["text"],
        "greedy text with and without speculation"
    );
    let metrics = server.get("/metrics").body;
    assert!(drafted(&metrics) > 0, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wisp_draft_tokens_accepted_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let bounded = completion(json!({"speculative.n_max": 2, "speculative.n_min": 1}));
    assert_eq!(bounded["choices"][0]["text"], plain["choices"][0]["text"]);
    let bad = json!({"prompt": "x", "speculative.n_max": 0}).to_string();
    server
        .post("/v1/completions", &bad)
        .assert_error(400, Some("speculative.n_max"));
    let bad = json!({"prompt": "x", "speculative.n_max": 2, "speculative.n_min": 3}).to_string();
    server
        .post("/v1/completions", &bad)
        .assert_error(400, Some("speculative.n_min"));
}
