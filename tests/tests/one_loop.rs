//! One generation loop: a single run (`wisp generate`) is the scheduler with a batch of
//! one, so it samples exactly what `--parallel N` samples for the same prompt and seed,
//! penalties included (their window starts with the prompt's tokens in both).

use serde_json::Value;
use wisp_tests::wisp_cli::wisp;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Repetitive, so the penalties change the choice of tokens.
const PROMPT: &str = "The quick brown fox jumps over the lazy dog. The quick brown fox";
const PENALTIES: &[&str] = &[
    "--repeat-penalty",
    "1.3",
    "--presence-penalty",
    "0.5",
    "--frequency-penalty",
    "0.5",
];

fn generate(extra: &[&str]) -> Value {
    let model = wisp_tests::model_path(SMOLLM2);
    let model = model.to_str().expect("a UTF-8 path");
    let args = [
        &["generate", "-m", model, "-p", PROMPT, "-n", "40", "--json"],
        extra,
    ]
    .concat();
    wisp(&args).json()
}

fn ids(v: &Value) -> Vec<u64> {
    v["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids in {v}"))
        .iter()
        .map(|id| id.as_u64().expect("a token id"))
        .collect()
}

/// The ids of every output of a `--parallel` run.
fn parallel_ids(v: &Value) -> Vec<Vec<u64>> {
    v["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {v}"))
        .iter()
        .map(ids)
        .collect()
}

#[test]
fn single_run_and_parallel_runs_sample_the_same_tokens_with_penalties() {
    let greedy = [&["--temp", "0"], PENALTIES].concat();
    let single = ids(&generate(&greedy));
    assert_eq!(single.len(), 40, "40 tokens were asked for: {single:?}");
    let one = parallel_ids(&generate(&[&greedy[..], &["--parallel", "1"]].concat()));
    assert_eq!(
        one,
        vec![single.clone()],
        "--parallel 1 against a single run"
    );
    let four = parallel_ids(&generate(&[&greedy[..], &["--parallel", "4"]].concat()));
    assert_eq!(four, vec![single; 4], "--parallel 4 against a single run");
}

#[test]
fn single_run_and_parallel_run_draw_the_same_random_tokens() {
    // --parallel gives generation i the seed `seed + i`, so the first has the single
    // run's seed and random stream.
    let sampled = [&["--temp", "0.9", "--seed", "7"], PENALTIES].concat();
    let single = ids(&generate(&sampled));
    let two = parallel_ids(&generate(&[&sampled[..], &["--parallel", "2"]].concat()));
    assert_eq!(two[0], single);
    assert_ne!(two[1], single, "the second generation has its own seed");
}

/// Speculative decoding leaves greedy output unchanged on a real model, with a mild
/// repetition penalty (so each verified row is weighed with the drafts before it in the
/// penalty window): prompt lookup with each draft length, and layer-skip self-drafting.
#[test]
fn speculative_greedy_output_equals_plain_decoding() {
    let model = wisp_tests::model_path(SMOLLM2);
    let model = model.to_str().expect("a UTF-8 path");
    let prompt = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n\
                  # The same two functions again:\ndef add(a, b):";
    let run = |extra: &[&str]| {
        let base = ["generate", "-m", model, "-p", prompt, "-n", "40", "--json"];
        let sampling = ["--temp", "0", "--repeat-penalty", "1.05"];
        wisp(&[&base[..], &sampling, extra].concat()).json()
    };
    let plain = ids(&run(&[]));
    for k in ["1", "2", "4", "8"] {
        let out = run(&["--lookup", "3", "--draft-max", k, "--draft-fixed"]);
        assert!(
            out["speculation"]["accepted"].as_u64().unwrap() > 0,
            "{out}"
        );
        assert_eq!(ids(&out), plain, "--lookup 3 --draft-max {k}");
    }
    let out = run(&["--self-draft", "20", "--draft-max", "3", "--draft-fixed"]);
    assert!(out["speculation"]["drafted"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(ids(&out), plain, "--self-draft 20");
}

#[test]
fn speculation_flags_out_of_range_are_refused_by_name() {
    let model = wisp_tests::model_path(SMOLLM2);
    let model = model.to_str().expect("a UTF-8 path");
    let run = |extra: &[&str]| {
        let args = [&["generate", "-m", model, "-p", PROMPT, "-n", "4"], extra].concat();
        wisp(&args)
    };
    run(&["--lookup", "2", "--draft-max", "0"]).fails_with("--draft-max takes 1 to 16");
    run(&["--lookup", "2", "--draft-max", "4", "--draft-min", "5"]).fails_with("--draft-min 5");
    run(&["--lookup", "9"]).fails_with("--lookup takes 1 to 8");
    // SmolLM2 has 30 layers: a drafting pass must be shallower.
    run(&["--self-draft", "30"]).fails_with("--self-draft 30: the drafting layers must be");
}
