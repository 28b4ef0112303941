//! `wisp bench` on lavapipe, short: the JSON has its schema, every number is positive,
//! and the numbers agree with each other and with the model (a decoded token moves the
//! model's weights, within 5%); markdown, CSV and the SVG plot carry the same tests; runs
//! on every adapter and their comparison in one table; bad options and
//! unknown synthetic shapes are refused with errors that name them.

use serde_json::Value;
use wisp_tests::model_path;
use wisp_tests::wisp_cli::wisp;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const TINY: &str = "layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=1000:q4_0";

fn number(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

fn positive(v: &Value, path: &str) -> f64 {
    let x = number(v, path);
    assert!(x > 0.0 && x.is_finite(), "{path} = {x}");
    x
}

/// The fields of a CSV line (quoted fields may hold commas and doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn json_has_the_schema_and_consistent_numbers() {
    let model = model_path(SMOLLM2);
    let out = wisp(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "8",
        "-r",
        "2",
        "-o",
        "json",
    ])
    .json();
    assert_eq!(out["schema_version"], 1);
    for key in [
        "/model/name",
        "/adapter/name",
        "/adapter/backend",
        "/adapter/variant",
        "/adapter/kv_type",
        "/bandwidth/timing",
    ] {
        assert!(
            out.pointer(key)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            "{key} in {out}"
        );
    }
    let tensor_bytes = positive(&out, "/model/tensor_bytes");
    positive(&out, "/model/params");
    positive(&out, "/load/seconds");
    number(&out, "/load/pipeline_compile_seconds");
    let bandwidth = positive(&out, "/bandwidth/gb_per_s");
    let tests = out["tests"].as_array().expect("tests");
    let names: Vec<&str> = tests.iter().map(|t| t["test"].as_str().unwrap()).collect();
    assert_eq!(names, ["pp16", "tg8"]);
    for t in tests {
        let samples: Vec<f64> = t["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(samples.len(), 2, "{t}");
        assert!(samples.iter().all(|&x| x > 0.0 && x.is_finite()), "{t}");
        let mean = positive(t, "/tokens_per_second");
        assert!(close(mean, samples.iter().sum::<f64>() / 2.0, 1e-9), "{t}");
        assert!(number(t, "/tokens_per_second_std") >= 0.0);
        let b = &t["breakdown"];
        let total = positive(b, "/total_ms");
        if b["timing"] == "gpu-timestamps" {
            let kernels = b["kernels"].as_array().unwrap();
            assert!(!kernels.is_empty());
            let sum_ms: f64 = kernels.iter().map(|k| k["ms"].as_f64().unwrap()).sum();
            let sum_percent: f64 = kernels.iter().map(|k| k["percent"].as_f64().unwrap()).sum();
            assert!(
                close(sum_ms, total, 1e-6) && close(sum_percent, 100.0, 1e-6),
                "{b}"
            );
        } else {
            assert_eq!(b["timing"], "cpu-wall");
        }
    }
    let (pp, tg) = (&tests[0], &tests[1]);
    positive(pp, "/gflop_per_second");
    assert!(pp["bytes_per_token"].is_null());
    // SmolLM2's embedding is its LM head: every weight is read once per decoded token.
    let bytes = positive(tg, "/bytes_per_token");
    assert!(
        close(bytes, tensor_bytes, 0.05),
        "{bytes} bytes per token for {tensor_bytes} bytes of tensors"
    );
    let gbs = positive(tg, "/gb_per_second");
    assert!(close(
        gbs,
        bytes * number(tg, "/tokens_per_second") / 1e9,
        1e-9
    ));
    assert!(close(
        positive(tg, "/percent_of_bandwidth"),
        100.0 * gbs / bandwidth,
        1e-9
    ));
}

#[test]
fn synthetic_models_depth_and_batches_in_markdown_and_csv() {
    let args = [
        "bench",
        "--synthetic",
        TINY,
        "-p",
        "8",
        "-n",
        "4",
        "-d",
        "0,16",
        "-b",
        "1,2",
        "-r",
        "1",
    ];
    let md = wisp(&[&args[..], &["-o", "md"]].concat()).ok().to_string();
    for name in [
        "| pp8 |",
        "| pp8 ×2 |",
        "| pp8 @ d16 ×2 |",
        "| tg4 |",
        "| tg4 @ d16 |",
        "| tg4 @ d16 ×2 |",
    ] {
        assert!(md.contains(name), "{name} missing from:\n{md}");
    }
    assert!(
        md.contains("First-run cost") && md.contains("Bandwidth probe"),
        "{md}"
    );
    let csv = wisp(&[&args[..], &["-o", "csv"]].concat()).ok().to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 9, "a header and 8 tests:\n{csv}");
    let header = csv_fields(lines[0]);
    assert!(
        lines.iter().all(|l| csv_fields(l).len() == header.len()),
        "{csv}"
    );
    let kind = header.iter().position(|h| h == "kind").unwrap();
    let kinds: Vec<String> = lines[1..]
        .iter()
        .map(|l| csv_fields(l)[kind].clone())
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "prefill").count(), 4, "{csv}");
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("bench.svg");
    let json = wisp(&[&args[..], &["-o", "json", "--plot", svg.to_str().unwrap()]].concat()).json();
    let drawing = std::fs::read_to_string(&svg).expect("the plot");
    assert!(
        drawing.starts_with("<svg")
            && drawing.contains("tg4 ×2")
            && drawing.contains("% of the step"),
        "{drawing}"
    );
    let tg: Vec<&Value> = json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "generate")
        .collect();
    assert_eq!(tg.len(), 4);
    // Two sequences share each step's weights; depth adds KV reads.
    let bytes = |depth: u64, batch: u64| {
        let t = tg
            .iter()
            .find(|t| t["depth"] == depth && t["batch"] == batch)
            .unwrap();
        positive(t, "/bytes_per_token")
    };
    assert!(
        bytes(0, 2) < bytes(0, 1) && bytes(16, 1) > bytes(0, 1),
        "{json}"
    );
}

#[test]
fn every_adapter_then_runs_compared_in_one_table() {
    let dir = tempfile::tempdir().unwrap();
    let all = wisp(&[
        "bench",
        "--synthetic",
        TINY,
        "-p",
        "8",
        "-n",
        "4",
        "-r",
        "1",
        "--all-adapters",
        "-o",
        "json",
    ])
    .ok()
    .to_string();
    let reports: Value = serde_json::from_str(&all).unwrap();
    let reports = reports
        .as_array()
        .expect("an array, one report per adapter");
    assert!(
        !reports.is_empty()
            && reports
                .iter()
                .all(|r| r["tests"].as_array().is_some_and(|t| t.len() == 2)),
        "{all}"
    );
    let one = wisp(&[
        "bench",
        "--synthetic",
        TINY,
        "-p",
        "8",
        "-n",
        "4",
        "-d",
        "8",
        "-r",
        "1",
        "-o",
        "json",
    ])
    .ok()
    .to_string();
    let (a, b) = (dir.path().join("all.json"), dir.path().join("one.json"));
    std::fs::write(&a, &all).unwrap();
    std::fs::write(&b, &one).unwrap();
    let table = wisp(&["bench", "compare", a.to_str().unwrap(), b.to_str().unwrap()])
        .ok()
        .to_string();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
        .collect();
    // Header, then pp8, tg4 (every run but the last) and pp8 @ d8, tg4 @ d8 (the last only).
    assert_eq!(rows.len(), 5, "{table}");
    let runs = reports.len() + 1;
    assert!(
        rows.iter().all(|r| r.matches(" |").count() == runs + 1),
        "{table}"
    );
    assert!(
        rows[1].starts_with("| pp8 |")
            && rows[1].ends_with("– |")
            && rows[3].starts_with("| pp8 @ d8 |"),
        "{table}"
    );
    assert!(rows[2].contains("% BW)"), "{table}");
    std::fs::write(&b, "{}").unwrap();
    wisp(&["bench", "compare", b.to_str().unwrap()]).fails_with("wisp bench -o json");
}

#[test]
fn bad_options_are_refused_by_name() {
    wisp(&["bench", "--synthetic", "llama-13b:q4_0"]).fails_with("llama-1b");
    wisp(&["bench", "--synthetic", "llama-1b:q9_9"]).fails_with("q9_9");
    wisp(&["bench", "--synthetic", TINY, "-r", "0"]).fails_with("-r");
    wisp(&["bench", "--synthetic", TINY, "-p", "0", "-n", "0"]).fails_with("nothing to run");
}

#[test]
fn a_synthetic_model_saved_as_gguf_benchmarks_like_the_generated_one() {
    // What other runtimes (llama-bench) are given: the same weights and shape in a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let path = path.to_str().unwrap();
    let out = wisp(&["bench", "--synthetic", TINY, "--save-gguf", path]);
    assert!(
        out.ok().is_empty(),
        "writing prints nothing on stdout: {}",
        out.stdout
    );
    let saved = wisp(&[
        "bench", "-m", path, "-p", "8", "-n", "4", "-r", "1", "-o", "json",
    ])
    .json();
    let generated = wisp(&[
        "bench",
        "--synthetic",
        TINY,
        "-p",
        "8",
        "-n",
        "4",
        "-r",
        "1",
        "-o",
        "json",
    ])
    .json();
    for key in [
        "/model/params",
        "/model/tensor_bytes",
        "/tests/1/bytes_per_token",
    ] {
        assert_eq!(number(&saved, key), number(&generated, key), "{key}");
    }
    let refused = wisp(&["bench", "--save-gguf", path]);
    assert!(
        refused.code != Some(0) && refused.stderr.contains("--synthetic"),
        "{}",
        refused.stderr
    );
}

/// With a drafter, `wisp bench` decodes one prompt with and without speculation in the
/// same run: both speeds, their ratio, what speculation did, and the same tokens.
#[test]
fn a_drafter_compares_speculative_with_plain_decoding() {
    let model = model_path(SMOLLM2);
    let out = wisp(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "--lookup",
        "3",
        "-n",
        "24",
        "-r",
        "1",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(out.ok().trim()).expect("JSON");
    let (plain, spec) = (
        positive(&v, "/plain_tok_s"),
        positive(&v, "/speculative_tok_s"),
    );
    assert!(close(number(&v, "/speed_up"), spec / plain, 1e-9), "{v}");
    assert_eq!(v["identical"], Value::Bool(true), "{v}");
    assert!(
        number(&v, "/acceptance_rate") > 0.0,
        "the default prompt repeats itself: {v}"
    );
    assert!(number(&v, "/mean_accepted_length") > 1.0, "{v}");
    let reps = v["repetitions"].as_array().expect("repetitions");
    assert_eq!(reps.len(), 1, "{v}");
    assert!(reps[0]["speculation"]["steps"].as_u64().unwrap() > 0, "{v}");
}
