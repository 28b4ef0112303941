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

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use wisp_tests::serve::{ServeProcess, wait_with_timeout};
use wisp_tests::wisp_cli::{chat_reply, wisp_bin};

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
    process: ServeProcess,
}

impl Server {
    /// `wisp serve -m MODEL --port 0 EXTRA...`, once it listens with its model loaded.
    fn start(extra: &[&str]) -> Server {
        let model = model();
        // A short context keeps the pool (one context per --parallel generation) small.
        let mut args = vec!["-m", &model, "--ctx", CTX];
        args.extend_from_slice(extra);
        let mut process = ServeProcess::spawn(&args, START_TIMEOUT);
        let deadline = Instant::now() + START_TIMEOUT;
        // The server listens before the model is loaded; /health answers 200 once it is.
        let what = format!("{extra:?} loaded its model (GET /health answers 200)");
        process.wait_for(&what, deadline, |p| {
            let ready = p.health_status() == Some(200);
            if !ready {
                thread::sleep(Duration::from_millis(200));
            }
            ready
        });
        Server { process }
    }

    fn base_url(&self) -> String {
        format!("{}/v1", self.process.base())
    }

    fn log(&self) -> String {
        self.process.log()
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
        self.process.sigterm();
        let status = self.process.wait_exit(STOP_TIMEOUT);
        assert!(
            status.is_some_and(|s| s.code() == Some(0)),
            "wisp serve after SIGTERM: {status:?} (expected exit code 0 within {STOP_TIMEOUT:?}):\n{}",
            self.log()
        );
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

/// `wisp chat -m MODEL --ctx CTX ARGS` answering `question`: the reply.
fn cli_chat_reply(args: &[&str], question: &str) -> String {
    let model = model();
    chat_reply(&[&["-m", &model, "--ctx", CTX], args].concat(), question)
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
