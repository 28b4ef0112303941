//! The shell scripts' failure reporting (`scripts/lib/fail.sh`): a failing step names
//! itself, the command and its exit code, and says how to do it by hand; a probe of a
//! missing tool inside `$(...)` under `pipefail` is reported instead of ending the
//! script without a word (the bug a newcomer met in `setup.sh`'s wasm-bindgen probe).

use std::path::PathBuf;
use std::process::{Command, Output};

fn fail_sh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/fail.sh")
}

/// Runs `body` in bash after sourcing fail.sh, as the scripts do.
fn run_script(body: &str) -> Output {
    let script = format!(". '{}'\n{body}\n", fail_sh().display());
    Command::new("bash")
        .args(["-c", &script, "demo.sh"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("bash runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_failing_step_names_itself_the_command_and_the_fix() {
    let out = run_script(
        "install_thing() { false; }\n\
         step_is 'installing thing' 'apt-get install thing'\n\
         install_thing\n\
         echo 'not reached'",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("not reached"),
        "the script went on after the failure"
    );
    assert!(err.contains("step 'installing thing' failed"), "{err}");
    assert!(err.contains("`false` exited with 1"), "{err}");
    assert!(
        err.contains("to do it by hand: apt-get install thing"),
        "{err}"
    );
    assert_eq!(
        err.matches("error:").count(),
        1,
        "one report per failure: {err}"
    );
}

#[test]
fn a_missing_tool_in_a_probe_is_reported_not_silent() {
    // The pattern that ended setup.sh with exit code 127 and no message.
    let out = run_script(
        "step_is 'probing a tool'\n\
         version=$(no-such-tool-here --version 2>/dev/null | awk '{print $2}')\n\
         echo \"got $version\"",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(127), "stderr: {err}");
    assert!(err.contains("step 'probing a tool' failed"), "{err}");
    assert!(err.contains("no-such-tool-here"), "{err}");
}

#[test]
fn a_safe_probe_of_a_missing_tool_goes_on() {
    // The way setup.sh now probes: only when the tool is there.
    let out = run_script(
        "v=''\n\
         if command -v no-such-tool-here >/dev/null 2>&1; then v=$(no-such-tool-here --version); fi\n\
         echo \"version: '${v}'\"",
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "version: ''");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
