//! The desktop app in a real window, driven by its scripted mode. It needs an X display
//! and the default model in the cache, so it is `#[ignore]`d in a plain `cargo test`;
//! `scripts/test.sh` runs it under Xvfb:
//!
//! ```sh
//! xvfb-run -a -s "-screen 0 1280x800x24" cargo test --release -p wisp-desktop --test window -- --ignored
//! ```
//!
//! The screenshots stay in `<target>/desktop-test/` (`reply.png`: the first reply;
//! `restart.png`: the same conversation after a restart, regenerated and then stopped).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const PROMPT: &str = "What is the capital of France?";

fn app_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wisp-desktop"))
}

/// `<target>/desktop-test/`, next to the profile folder that holds the binary.
fn shots_dir() -> PathBuf {
    let bin = app_bin();
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("the binary is in <target>/<profile>/");
    target.join("desktop-test")
}

/// Runs the app with `args`, expecting success and one JSON report line on stdout.
fn run_app(args: &[&str]) -> Value {
    assert!(
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some(),
        "no display: run this test under xvfb-run (see the file's header)"
    );
    let out = Command::new(app_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("start wisp-desktop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wisp-desktop {args:?} failed ({}):\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "wisp-desktop panicked:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no report on stdout; stderr:\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("the report is not JSON ({e}): {line}"))
}

/// The PNG's size and how many distinct colours it has.
fn png_summary(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("the PNG's pixels");
    let colours: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()].chunks(4).collect();
    (info.width, info.height, colours.len())
}

/// The reply `wisp chat` gives to the same conversation (greedy, with the model's default
/// system prompt, as the app's new chats), for comparison.
fn cli_reply(max_tokens: &str) -> String {
    let wisp = app_bin().with_file_name(format!("wisp{}", std::env::consts::EXE_SUFFIX));
    assert!(
        wisp.is_file(),
        "{} is not built (cargo build --release --workspace)",
        wisp.display()
    );
    let mut child = Command::new(&wisp)
        .args(["chat", "--temp", "0", "-n", max_tokens])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wisp chat");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PROMPT}\n").as_bytes())
        .expect("write the prompt");
    let out = child.wait_with_output().expect("run wisp chat");
    assert!(
        out.status.success(),
        "wisp chat failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout is "> " REPLY "\n" "> " "\n" (the prompt again, then the end of input).
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    stdout
        .strip_prefix("> ")
        .and_then(|s| s.strip_suffix("\n> \n"))
        .unwrap_or_else(|| panic!("unexpected wisp chat output {stdout:?}"))
        .to_string()
}

fn messages(report: &Value) -> Vec<(String, String)> {
    report["selected"]["messages"]
        .as_array()
        .expect("the selected conversation's messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs an X display and the default model: scripts/test.sh runs it under Xvfb"]
fn a_prompt_to_the_default_model_gets_a_reply_on_screen_that_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let shots = shots_dir();
    let (reply_png, restart_png) = (shots.join("reply.png"), shots.join("restart.png"));
    for old in [&reply_png, &restart_png] {
        let _ = std::fs::remove_file(old);
    }

    // 1. A fresh start: no settings, so the default model and its default system prompt.
    let first = run_app(&[
        "--data-dir",
        data_dir,
        "--temp",
        "0",
        "-n",
        "24",
        "--send",
        PROMPT,
        "--screenshot",
        reply_png.to_str().unwrap(),
        "--report",
        "--quit",
    ]);
    assert_eq!(first["listed_at_start"], serde_json::json!([]), "{first}");
    let model = first["model"].as_str().expect("a model is loaded");
    assert!(
        model.to_lowercase().contains("smollm2"),
        "the default model is loaded: {model}"
    );
    assert!(!first["adapter"].as_str().expect("an adapter").is_empty());
    let reply = first["replies"][0]["text"]
        .as_str()
        .expect("a reply")
        .to_string();
    assert_eq!(
        messages(&first),
        [
            ("user".to_string(), PROMPT.to_string()),
            ("assistant".to_string(), reply.clone())
        ]
    );
    // The conversation has no system prompt of its own: it follows the model's default.
    assert_eq!(first["selected"]["system_prompt"], Value::Null, "{first}");
    // The same engine, greedy: the window shows what the command line says.
    assert_eq!(
        reply,
        cli_reply("24"),
        "the app's reply differs from `wisp chat`'s"
    );
    let stats = &first["replies"][0]["stats"];
    assert!(
        stats["generated_tokens"].as_u64().unwrap() > 0
            && stats["decode_tokens_per_second"].as_f64().unwrap() > 0.0,
        "{stats}"
    );
    // The window kept drawing while the engine worked.
    let frames = &first["frames"];
    assert!(
        frames["while_loading"].as_u64().unwrap() >= 1
            && frames["while_replying"].as_u64().unwrap() >= 2,
        "{frames}"
    );
    eprintln!("frames drawn while the engine worked: {frames}");
    let (width, height, colours) = png_summary(&reply_png);
    assert!(width >= 640 && height >= 400, "screenshot {width}x{height}");
    assert!(
        colours > 20,
        "the screenshot has {colours} colours: a blank window?"
    );

    // The conversation is on disk.
    let files: Vec<PathBuf> = std::fs::read_dir(data.path().join("conversations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(saved["messages"], first["selected"]["messages"]);

    // 2. A restart lists it; Regenerate answers the same (greedy) and Stop cuts the next
    //    reply short, which is kept as far as it got.
    let second = run_app(&[
        "--data-dir",
        data_dir,
        "-n",
        "200",
        "--step",
        "regenerate",
        "--step",
        "send-stop=Write a long story about a dragon.",
        "--screenshot",
        restart_png.to_str().unwrap(),
        "--report",
        "--quit",
    ]);
    assert_eq!(
        second["listed_at_start"],
        serde_json::json!([PROMPT]),
        "{second}"
    );
    assert_eq!(second["replies"][0]["text"], reply.as_str(), "{second}");
    let stopped = &second["replies"][1];
    assert_eq!(stopped["stats"]["stop_reason"], "cancelled", "{stopped}");
    assert!(
        stopped["stats"]["generated_tokens"].as_u64().unwrap() < 200,
        "{stopped}"
    );
    // The second turn reused the cached first one.
    assert!(
        stopped["stats"]["reused_tokens"].as_u64().unwrap() > 0,
        "{stopped}"
    );
    let partial = stopped["text"].as_str().unwrap().to_string();
    assert!(!partial.is_empty());
    let roles: Vec<String> = messages(&second).into_iter().map(|(r, _)| r).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(messages(&second)[3].1, partial);
    // The temperature set by the first run's --temp was kept in the settings, as the one
    // value chosen there (the others follow the model).
    let settings: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("settings.json")).unwrap()).unwrap();
    assert_eq!(
        settings["sampling"]["overrides"],
        serde_json::json!({"temperature": 0.0}),
        "{settings}"
    );
    let (_, _, colours) = png_summary(&restart_png);
    assert!(colours > 20);
    eprintln!(
        "screenshots: {} and {}",
        reply_png.display(),
        restart_png.display()
    );
}
