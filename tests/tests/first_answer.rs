//! A newcomer's first question gets an answer that makes sense, with no sampling flags:
//! each known model runs with its authors' recommended sampling and system prompt
//! (`wisp_core::defaults`), and flags still win over them.
//!
//! Every seed is its own `wisp chat` process (the seed is fixed per process), so these
//! tests take a while on a software adapter: about a minute for SmolLM2's ten seeds, a few
//! minutes for Qwen2.5-Coder's five on lavapipe.

use serde_json::Value;
use wisp_tests::wisp_cli::{chat_reply, wisp};

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN_CODER: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
/// The seeds a question is asked with, and how many of the answers must make sense.
struct Seeds {
    seeds: std::ops::RangeInclusive<u64>,
    good_enough: usize,
}

/// Nine of ten.
const TEN_SEEDS: Seeds = Seeds {
    seeds: 1..=10,
    good_enough: 9,
};

/// Asks `question` once per seed and checks that at least `good_enough` replies pass
/// `makes_sense`; the failure message lists every reply.
fn ask_every_seed(
    args: &[&str],
    question: &str,
    Seeds { seeds, good_enough }: Seeds,
    makes_sense: impl Fn(&str) -> bool,
) {
    let replies: Vec<(u64, String)> = seeds
        .map(|seed| {
            let seed_text = seed.to_string();
            let reply = chat_reply(&[args, &["--seed", &seed_text]].concat(), question);
            eprintln!("seed {seed}: {reply:?}");
            (seed, reply)
        })
        .collect();
    let good = replies.iter().filter(|(_, r)| makes_sense(r)).count();
    assert!(
        good >= good_enough,
        "{good} of {} answers to {question:?} make sense:\n{replies:#?}",
        replies.len()
    );
}

#[test]
fn the_default_model_knows_the_capital_of_france_without_sampling_flags() {
    // The default model, as `scripts/chat.sh` runs it; checked to be in the cache first so
    // that a missing model is reported instead of fetched.
    wisp_tests::model_path(SMOLLM2);
    ask_every_seed(&[], "What is the capital of France?", TEN_SEEDS, |reply| {
        reply.contains("Paris")
    });
}

#[test]
fn qwen_coder_writes_a_string_reversal_without_sampling_flags() {
    let model = wisp_tests::model_path(QWEN_CODER).display().to_string();
    // -n and --stop only bound the time on a software adapter: the function comes first,
    // in a fenced block (its body ends within about 60 tokens), the explanation after it.
    // The reply stops where that block closes.
    // Four of five: a reply takes half a minute on a software adapter.
    let seeds = Seeds {
        seeds: 1..=5,
        good_enough: 4,
    };
    ask_every_seed(
        &["-m", &model, "-n", "72", "--stop", "```\n"],
        "Write a Python function that reverses a string",
        seeds,
        |reply| reply.contains("def ") && (reply.contains("[::-1]") || reply.contains("reversed")),
    );
}

/// `wisp generate --json` on `model` with `flags`: the sampling values it ran with.
fn sampling_in_effect(model: &str, flags: &[&str]) -> Value {
    let args = [
        &[
            "generate", "-m", model, "-p", "Hi", "-n", "1", "--ctx", "64", "--json",
        ],
        flags,
    ]
    .concat();
    wisp(&args).json()["sampling"].clone()
}

#[test]
fn a_flag_beats_the_model_default_and_the_source_of_each_value_is_reported() {
    let model = wisp_tests::model_path(SMOLLM2).display().to_string();
    let kind = |v: &Value| v["source"]["kind"].as_str().unwrap_or_default().to_string();

    let defaults = sampling_in_effect(&model, &[]);
    let value = |v: &Value| v["value"].as_f64().expect("a number");
    assert!(
        (value(&defaults["temperature"]) - 0.2).abs() < 1e-6,
        "{defaults}"
    );
    assert_eq!(kind(&defaults["temperature"]), "known_model", "{defaults}");
    assert_eq!(
        defaults["temperature"]["source"]["model"], "smollm2-135m-instruct-q4_1",
        "{defaults}"
    );
    assert_eq!(kind(&defaults["top_k"]), "generic", "{defaults}");

    let flagged = sampling_in_effect(&model, &["--temp", "1.3", "--top-k", "7"]);
    assert!(
        (value(&flagged["temperature"]) - 1.3).abs() < 1e-6,
        "{flagged}"
    );
    assert_eq!(kind(&flagged["temperature"]), "explicit", "{flagged}");
    assert_eq!(flagged["top_k"]["value"].as_u64(), Some(7), "{flagged}");
    // The values not given on the command line are still the model's.
    assert_eq!(flagged["top_p"], defaults["top_p"], "{flagged}");

    // `wisp info` lists the same defaults, with the system prompt.
    let info = wisp(&["info", "-m", &model, "--json"]).json();
    let listed = &info["model"]["defaults"];
    assert_eq!(listed["sampling"], defaults, "{listed}");
    assert_eq!(
        listed["known_model"], "smollm2-135m-instruct-q4_1",
        "{listed}"
    );
    // SmolLM2's default is an empty system message (see `defaults::known`), which is not
    // the same as none: the template would insert its own.
    assert_eq!(listed["system_prompt"]["value"], "", "{listed}");
    assert_eq!(kind(&listed["system_prompt"]), "known_model", "{listed}");
    let text = wisp(&["info", "-m", &model]).ok().to_string();
    assert!(
        text.contains("defaults when no flag is given")
            && text.contains("temperature")
            && text.contains("model card"),
        "{text}"
    );

    // A bad flag is refused before anything is loaded, naming the parameter.
    wisp(&["generate", "-m", &model, "-p", "Hi", "--top-p", "0"]).fails_with("top_p");
}
