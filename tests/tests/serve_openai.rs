//! `wisp serve` through the official OpenAI Python client: each test starts a server on
//! the default model (SmolLM2-135M-Instruct Q4_1) on a free port, runs one script of
//! `tests/python/` against it with the test environment's Python, and stops the server
//! with SIGTERM, which must end it cleanly (exit code 0).
//!
//! The Python environment is `<cache>/test-venv`, made by `scripts/setup.sh --test` with
//! the `openai` client pinned in `tests/python/requirements.txt`. A missing environment,
//! binary or model fails the test with the command that provides it.
//!
//! The tests take turns (one server at a time): on a 2-core machine with a software
//! adapter, servers side by side would slow each other past the scripts' timings.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use wisp_tests::wisp_cli::{wisp_bin, wisp_with_input};

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Loading the model and compiling its pipelines on lavapipe, with the pipeline cache cold.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// The longest script (load.py) takes about two minutes on lavapipe.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(420);
/// From SIGTERM to exit, for a server with no request left to drain.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Context of the servers and of `wisp chat` (the greedy comparison): more than any
/// prompt and reply of the scripts.
const CTX: &str = "1024";
const LISTENING: &str = "listening on http://";

/// One server at a time (see the module's doc).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the next one may still run.
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// The test environment's Python, or a failure naming the command that makes it.
fn venv_python() -> PathBuf {
    let python = wisp_tests::cache_dir().join("test-venv/bin/python");
    assert!(
        python.is_file(),
        "the Python test environment is missing ({}): run `scripts/setup.sh --test`",
        python.display()
    );
    python
}

fn model() -> String {
    wisp_tests::model_path(MODEL).display().to_string()
}

/// A running `wisp serve`. Dropped without [`Server::stop`] (a failed test), it is killed.
struct Server {
    child: Child,
    port: u16,
    /// Everything the server wrote on stderr so far, for failure messages.
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `wisp serve -m MODEL --port 0 EXTRA...`, once it says where it listens.
    fn start(extra: &[&str]) -> Server {
        let model = model();
        let mut child = Command::new(wisp_bin())
            // A short context keeps the pool (one context per --parallel generation) small.
            .args(["serve", "-m", &model, "--port", "0", "--ctx", CTX])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wisp serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        // Reads stderr to its end: the port from the `listening on` line, and the rest
        // into the log (a full pipe would stall the server).
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(port);
                }
                let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Server {
            child,
            port: 0,
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if server.port == 0
                && let Ok(port) = port_rx.recv_timeout(Duration::from_millis(200))
            {
                server.port = port;
            }
            // The server listens before the model is loaded; /health answers 200 once it is.
            if server.port != 0 {
                if health_status(server.port) == Some(200) {
                    return server;
                }
                thread::sleep(Duration::from_millis(200));
            }
            if let Some(status) = server.child.try_wait().expect("wait for wisp serve") {
                // Let the reader thread take in the last lines.
                thread::sleep(Duration::from_millis(200));
                panic!(
                    "wisp serve {extra:?} exited with {status} before it was ready:\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "wisp serve {extra:?} was not listening with its model loaded (GET /health: {:?}) within {START_TIMEOUT:?}:\n{}",
                (server.port != 0).then(|| health_status(server.port)),
                server.log()
            );
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `tests/python/SCRIPT --base-url URL ARGS...` and asserts that it passes.
    fn run_script(&self, script: &str, args: &[&str]) {
        let path = repo_root().join("tests/python").join(script);
        let mut command = Command::new(venv_python());
        command
            .arg(&path)
            .args(["--base-url", &self.base_url()])
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null());
        let (status, output) = run_with_timeout(command, SCRIPT_TIMEOUT);
        eprintln!("{script}:\n{output}");
        assert!(
            status.is_some_and(|s| s.success()),
            "{script} {} ({status:?}); its output is above; the server's log:\n{}",
            if status.is_none() {
                "ran out of time"
            } else {
                "failed"
            },
            self.log()
        );
    }

    /// SIGTERM, then the exit code must be 0 within [`STOP_TIMEOUT`].
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        // bash's kill builtin: no signal crate, and bash is everywhere these tests run.
        let sent = Command::new("bash")
            .args(["-c", "kill -TERM \"$1\"", "kill", &pid])
            .status()
            .expect("run bash");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = wait_with_timeout(&mut self.child, STOP_TIMEOUT);
        assert!(
            status.is_some_and(|s| s.code() == Some(0)),
            "wisp serve after SIGTERM: {status:?} (expected exit code 0 within {STOP_TIMEOUT:?}):\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The status code of `GET /health` on the server at `port` (`None`: no answer). Plain
/// HTTP/1.0 over a socket, so the tests need no HTTP client of their own.
fn health_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).ok()?;
    // "HTTP/1.1 200 OK"
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// The port of a `listening on http://HOST:PORT` line.
fn listening_port(line: &str) -> Option<u16> {
    let address = &line[line.find(LISTENING)? + LISTENING.len()..];
    let address = address
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()?;
    address.rsplit_once(':')?.1.parse().ok()
}

/// Waits for `child` at most `timeout`; kills it when it runs longer (`None`).
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `command` with stdout and stderr together, at most `timeout`: its status (`None`
/// when it was killed for running too long) and output.
fn run_with_timeout(mut command: Command, timeout: Duration) -> (Option<ExitStatus>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let writer_err = writer.try_clone().expect("a pipe");
    let mut child = command
        .stdout(writer)
        .stderr(writer_err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    // The command holds the write ends now; ours must go, or the reader never ends.
    drop(command);
    let collected = thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let status = wait_with_timeout(&mut child, timeout);
    (status, collected.join().expect("the output reader"))
}

/// `wisp chat -m MODEL ARGS` answering `question`: the reply (as tests/tests/first_answer.rs reads it).
fn cli_chat_reply(args: &[&str], question: &str) -> String {
    let model = model();
    let out = wisp_with_input(
        &[&["chat", "-m", &model, "--ctx", CTX], args].concat(),
        Some(&format!("{question}\n")),
    );
    let stdout = out.ok();
    // stdout is "> " REPLY "\n" "> " "\n" (the prompt again, then the end of input).
    stdout
        .strip_prefix("> ")
        .and_then(|s| s.strip_suffix("\n> \n"))
        .unwrap_or_else(|| {
            panic!(
                "unexpected wisp chat output {stdout:?}; stderr:\n{}",
                out.stderr
            )
        })
        .to_string()
}

fn check_prerequisites() {
    venv_python();
    wisp_tests::model_path(MODEL);
    wisp_bin();
}

#[test]
fn chat_completions_logprobs_stop_strings_usage_and_the_api_key() {
    check_prerequisites();
    let _turn = one_at_a_time();
    const SYSTEM: &str = "You are a helpful assistant.";
    const USER: &str = "Name three colours of the rainbow.";
    const MAX_TOKENS: &str = "24";
    let expected = cli_chat_reply(&["--system", SYSTEM, "--temp", "0", "-n", MAX_TOKENS], USER);
    let key = "test-key-7f3a";
    let server = Server::start(&["--api-key", key]);
    server.run_script(
        "api_basics.py",
        &[
            "--api-key",
            key,
            "--greedy-system",
            SYSTEM,
            "--greedy-user",
            USER,
            "--greedy-max-tokens",
            MAX_TOKENS,
            "--greedy-expected",
            &expected,
        ],
    );
    server.stop();
}

#[test]
fn a_shared_system_prompt_is_cached_and_answers_sooner() {
    check_prerequisites();
    let _turn = one_at_a_time();
    let server = Server::start(&[]);
    server.run_script("prefix_cache.py", &[]);
    server.stop();
}

#[test]
fn sixteen_streaming_clients_with_cancellations_get_their_solo_replies_and_leak_no_blocks() {
    check_prerequisites();
    let _turn = one_at_a_time();
    let server = Server::start(&["--parallel", "16"]);
    server.run_script("load.py", &[]);
    server.stop();
}

#[test]
fn six_requests_in_a_pool_for_two_are_preempted_and_resumed_exactly() {
    check_prerequisites();
    let _turn = one_at_a_time();
    // The pool holds two sequences of a prompt of at most MAX_PROMPT tokens and MAX_TOKENS
    // generated ones, in whole blocks of 16 (preemption.py checks its prompts are no longer).
    const MAX_PROMPT: u32 = 48;
    const MAX_TOKENS: u32 = 12;
    let kv_pool = 2 * (MAX_PROMPT + MAX_TOKENS).div_ceil(16) * 16;
    let kv_pool = kv_pool.to_string();
    let server = Server::start(&["--parallel", "6", "--kv-pool", &kv_pool]);
    server.run_script(
        "preemption.py",
        &[
            "--kv-pool",
            &kv_pool,
            "--max-prompt-tokens",
            &MAX_PROMPT.to_string(),
            "--max-tokens",
            &MAX_TOKENS.to_string(),
        ],
    );
    server.stop();
}

#[test]
fn prompts_that_differ_in_their_last_block_never_see_each_others_tokens() {
    check_prerequisites();
    let _turn = one_at_a_time();
    let server = Server::start(&["--parallel", "12"]);
    server.run_script("isolation.py", &[]);
    server.stop();
}

#[test]
fn the_listening_line_gives_the_port() {
    assert_eq!(
        listening_port("wisp serve: listening on http://127.0.0.1:40123"),
        Some(40123)
    );
    assert_eq!(
        listening_port("listening on http://[::1]:8080/ (model smollm2)"),
        Some(8080)
    );
    assert_eq!(listening_port("loading smollm2"), None);
}
