//! The shell scripts' failure reporting (`scripts/lib/fail.sh`): a failing step names
//! itself, the command and its exit code, and says how to do it by hand; a probe of a
//! missing tool inside `$(...)` under `pipefail` is reported instead of ending the
//! script without a word (the bug a newcomer met in `setup.sh`'s wasm-bindgen probe).
//! Also the summary of `bench-vs-llamacpp.sh`.

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

/// `scripts/bench_vs_llamacpp.py`, the summary of `bench-vs-llamacpp.sh`: one row per
/// test with both runtimes' speeds, their ratio, and generation's share of bandwidth
/// from Wisp's bytes per token and bandwidth probe.
#[test]
fn the_llama_cpp_comparison_puts_both_runtimes_in_one_table() {
    let dir = std::env::temp_dir().join(format!("wisp-bench-vs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wisp = r#"{
        "model": {"name": "llama-7b (synthetic, q4_0)", "tensor_bytes": 3800000000},
        "adapter": {"name": "NVIDIA H100", "backend": "Vulkan", "variant": "f16/subgroup/gpu"},
        "bandwidth": {"gb_per_s": 10.0},
        "tests": [
            {"kind": "prefill", "tokens": 512, "tokens_per_second": 100.0,
             "tokens_per_second_std": 1.0, "bytes_per_token": null},
            {"kind": "generate", "tokens": 128, "tokens_per_second": 20.0,
             "tokens_per_second_std": 0.5, "bytes_per_token": 250000000.0}
        ]
    }"#;
    let llama = r#"[
        {"n_prompt": 512, "n_gen": 0, "avg_ts": 200.0, "stddev_ts": 2.0, "gpu_info": "NVIDIA H100"},
        {"n_prompt": 0, "n_gen": 128, "avg_ts": 40.0, "stddev_ts": 0.4, "gpu_info": "NVIDIA H100"}
    ]"#;
    std::fs::write(dir.join("wisp.json"), wisp).unwrap();
    std::fs::write(dir.join("llama-vulkan.json"), llama).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_vs_llamacpp.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let row = |test: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("| {test} |")))
            .unwrap_or_else(|| panic!("no {test} row in\n{text}"))
            .to_string()
    };
    assert_eq!(
        row("pp512"),
        "| pp512 | 100.00 ± 1.00 | 200.00 ± 2.00 | 0.50× | – | – |"
    );
    // 20 tok/s x 250 MB = 5 GB/s of 10; llama.cpp's 40 tok/s reads 10.
    assert_eq!(
        row("tg128"),
        "| tg128 | 20.00 ± 0.50 | 40.00 ± 0.40 | 0.50× | 50.0% | 100.0% |"
    );
    assert!(text.contains("10.0 GB/s"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
