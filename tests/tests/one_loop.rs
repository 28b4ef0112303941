//! One generation loop: a single run (`wisp generate`) is the scheduler with a batch of
//! one, so it samples exactly what `--parallel N` samples for the same prompt and seed,
//! penalties included (their window starts with the prompt's tokens in both). Speculative
//! decoding, with every drafter and draft length, leaves greedy output unchanged.

use serde_json::Value;
use wisp_tests::wisp_cli::wisp;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN_CODER: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
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

/// A prompt whose continuation repeats it, so prompt lookup has something to propose.
const CODE_PROMPT: &str = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n\
                           # The same two functions again:\ndef add(a, b):";

/// `wisp generate` of CODE_PROMPT on `model`, 40 greedy tokens with a mild repetition
/// penalty (so each verified row is weighed with the drafts before it in the penalty
/// window), with `extra` flags.
fn generate_code(model: &str, extra: &[&str]) -> Value {
    let base = [
        "generate",
        "-m",
        model,
        "-p",
        CODE_PROMPT,
        "-n",
        "40",
        "--json",
    ];
    let sampling = ["--temp", "0", "--repeat-penalty", "1.05"];
    wisp(&[&base[..], &sampling, extra].concat()).json()
}

/// Every draft length the tests try: verification steps of 2, 3, 5 and 9 tokens, so the
/// small-batch kernels (2 to `Tuning::few_tokens` tokens) and the batched ones both run.
const DRAFT_LENGTHS: &[&str] = &["1", "2", "4", "8"];

/// Runs each drafter's flags with each of `lengths` and checks the ids against plain
/// decoding's, and that drafts were verified.
fn check_drafters(model: &str, drafters: &[&[&str]], lengths: &[&str]) {
    let plain = ids(&generate_code(model, &[]));
    for drafter in drafters {
        for &k in lengths {
            let flags = [*drafter, &["--draft-max", k, "--draft-fixed"]].concat();
            let out = generate_code(model, &flags);
            assert!(
                out["speculation"]["drafted"].as_u64().unwrap() > 0,
                "{flags:?}: {out}"
            );
            assert_eq!(ids(&out), plain, "{flags:?}");
        }
    }
}

/// Speculative decoding leaves greedy output unchanged on SmolLM2: prompt lookup and
/// layer-skip self-drafting with each draft length.
#[test]
fn speculative_greedy_output_equals_plain_decoding() {
    let model = wisp_tests::model_path(SMOLLM2);
    let model = model.to_str().expect("a UTF-8 path");
    check_drafters(
        model,
        &[&["--lookup", "3"], &["--self-draft", "20"]],
        DRAFT_LENGTHS,
    );
    // Lookup keeps drafts on this prompt.
    let out = generate_code(model, &["--lookup", "3"]);
    assert!(
        out["speculation"]["accepted"].as_u64().unwrap() > 0,
        "{out}"
    );
}

/// The same on Qwen2.5-Coder (QKV bias, NEOX RoPE, K-quants), self-drafting through 18
/// of its 24 layers: the drafter that runs the model's own layers. Two draft lengths, one
/// verified by the small-batch kernels and one by the batched ones. Every length, and
/// prompt lookup (which drafts without the model), runs on SmolLM2 above; a run of this
/// model takes four times as long on a software adapter.
#[test]
fn speculative_greedy_output_equals_plain_decoding_on_qwen_coder() {
    let model = wisp_tests::model_path(QWEN_CODER);
    check_drafters(
        model.to_str().expect("a UTF-8 path"),
        &[&["--self-draft", "18"]],
        &["2", "8"],
    );
}

/// SmolLM2 Q4_1 drafts for SmolLM2 converted to Q8_0 (`wisp convert`): the same greedy
/// ids as the Q8_0 model alone, for every draft length.
#[test]
fn a_draft_model_leaves_greedy_output_unchanged() {
    let q4 = wisp_tests::model_path(SMOLLM2);
    let q4 = q4.to_str().expect("a UTF-8 path");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let hf = dir.path().join("hf");
    let q8 = dir.path().join("smollm2-q8_0.gguf");
    let (hf, q8) = (hf.to_str().unwrap(), q8.to_str().unwrap());
    wisp(&["convert", q4, hf, "--to", "hf", "--type", "f16"]).ok();
    wisp(&["convert", hf, q8, "--type", "q8_0"]).ok();
    check_drafters(q8, &[&["--draft", q4]], DRAFT_LENGTHS);
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
