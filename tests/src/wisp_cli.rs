//! Running the `wisp` binary from tests: where it is, and its exit code and output.
//!
//! The binary is built by `cargo build --release -p wisp` (scripts/test.sh does it before
//! the tests); cargo only hands its path (`CARGO_BIN_EXE_wisp`) to tests of the same
//! package, so it is found next to the test's own executable, or at `$WISP_BIN`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// `wisp` in the same target folder as this test (`target/release/deps/cli-…` →
/// `target/release/wisp`), or `$WISP_BIN`.
pub fn wisp_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("WISP_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from <target>/<profile>/deps");
    let bin = dir.join(format!("wisp{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the wisp binary is not built at {}: run `cargo build --release -p wisp` first (or set WISP_BIN)",
        bin.display()
    );
    bin
}

/// What a run of `wisp` did.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "wisp failed:\n{}", self.stderr);
        &self.stdout
    }

    pub fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Asserts a clean failure: exit code 1, one `error:` line mentioning `needle`.
    pub fn fails_with(&self, needle: &str) {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit code 1; stderr:\n{}",
            self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one error line; stderr:\n{}",
            self.stderr
        );
        assert!(
            errors[0].to_lowercase().contains(&needle.to_lowercase()),
            "the error should mention {needle:?}: {}",
            errors[0]
        );
    }
}

/// Runs `wisp ARGS` with `input` on stdin; a panic in it fails the test.
pub fn wisp_with_input(args: &[&str], input: Option<&str>) -> Output {
    let mut child = Command::new(wisp_bin())
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wisp");
    if let Some(text) = input {
        // Dropping the handle closes stdin: the end of input.
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("run wisp");
    let out = Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !out.stderr.contains("panicked"),
        "wisp {args:?} panicked:\n{}",
        out.stderr
    );
    out
}

/// Runs `wisp ARGS`.
pub fn wisp(args: &[&str]) -> Output {
    wisp_with_input(args, None)
}

/// `wisp chat ARGS` answering `question` (piped in, as `printf '…\n' | wisp chat`): the
/// reply.
pub fn chat_reply(args: &[&str], question: &str) -> String {
    let out = wisp_with_input(&[&["chat"], args].concat(), Some(&format!("{question}\n")));
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
