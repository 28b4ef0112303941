//! Resolution and precedence of per-model defaults, on metadata written and read back as
//! real GGUF files.

use super::*;
use crate::gguf::{GgufFile, GgufWriter, Value};

const SMOLLM_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// A GGUF file's metadata: `keys` written by the GGUF writer and parsed back.
fn metadata(keys: &[(&str, Value)]) -> Metadata {
    let mut w = GgufWriter::new();
    for (k, v) in keys {
        w.metadata(*k, v.clone()).unwrap();
    }
    GgufFile::parse(&w.to_bytes()).unwrap().metadata
}

fn vocab(n: usize) -> Value {
    Value::string_array((0..n).map(|i| format!("t{i}")))
}

/// Metadata that looks like the SmolLM2-135M-Instruct GGUF (its name keys, vocabulary size
/// and chat template), plus `extra`.
fn smollm2(extra: &[(&str, Value)]) -> Metadata {
    let template = format!(
        "{{% for message in messages %}}{{% if loop.first and messages[0]['role'] != 'system' %}}\
         {{{{ '<|im_start|>system\\n{SMOLLM_SYSTEM}<|im_end|>\\n' }}}}{{% endif %}}{{% endfor %}}"
    );
    let mut keys = vec![
        ("general.architecture", Value::from("llama")),
        ("general.name", Value::from("SmolLM2 135M Instruct")),
        ("llama.context_length", Value::from(8192u32)),
        ("tokenizer.ggml.tokens", vocab(49152)),
        ("tokenizer.chat_template", Value::from(template.as_str())),
    ];
    keys.extend(extra.iter().cloned());
    metadata(&keys)
}

fn known(reference: &'static str) -> Source {
    Source::KnownModel {
        model: "smollm2-135m-instruct-q4_1",
        reference,
    }
}

#[test]
fn an_unknown_model_gets_the_generic_defaults_and_no_system_prompt() {
    let d = ModelDefaults::for_model(&metadata(&[
        ("general.architecture", Value::from("llama")),
        ("general.name", Value::from("Some Model")),
    ]));
    assert_eq!(d, ModelDefaults::generic());
    assert_eq!(
        d.sampling.config(7),
        SamplerConfig {
            seed: 7,
            ..SamplerConfig::default()
        }
    );
    assert!(
        d.sampling
            .rows()
            .iter()
            .all(|(_, _, source)| *source == Source::Generic)
    );
}

#[test]
fn a_known_model_is_recognised_from_its_metadata() {
    let d = ModelDefaults::for_model(&smollm2(&[]));
    assert_eq!(d.known_model, Some("smollm2-135m-instruct-q4_1"));
    assert_eq!(d.sampling.temperature.value, 0.2);
    assert!(matches!(
        d.sampling.temperature.source,
        Source::KnownModel {
            model: "smollm2-135m-instruct-q4_1",
            ..
        }
    ));
    assert_eq!(d.sampling.top_p.value, 0.9);
    // What the authors do not give stays generic.
    assert_eq!(d.sampling.top_k, Sourced::new(40, Source::Generic));
    assert_eq!(d.sampling.min_p, Sourced::new(0.05, Source::Generic));
    // An empty system message (Wisp's measured choice), not the template's.
    assert_eq!(d.system_prompt.value.as_deref(), Some(""));
    assert!(
        matches!(d.system_prompt.source, Source::KnownModel { reference, .. } if reference.starts_with("Wisp's choice"))
    );
    assert!(d.warnings.is_empty());
    // The name keys of the real file (named after its training run) match too.
    let real = smollm2(&[
        (
            "general.name",
            Value::from("Smollm2 135M 8k Lc100K Mix1 Ep2"),
        ),
        ("general.basename", Value::from("smollm2")),
        ("general.size_label", Value::from("135M")),
        ("general.finetune", Value::from("8k-lc100k-mix1-ep2")),
    ]);
    assert_eq!(
        ModelDefaults::for_model(&real).known_model,
        Some("smollm2-135m-instruct-q4_1")
    );
}

/// Metadata that looks like the Qwen2.5-Coder-0.5B-Instruct GGUF, with `template`.
fn qwen_coder(template: &str) -> Metadata {
    metadata(&[
        ("general.architecture", Value::from("qwen2")),
        (
            "general.name",
            Value::from("Qwen2.5 Coder 0.5B Instruct AWQ"),
        ),
        ("tokenizer.ggml.tokens", vocab(151936)),
        ("tokenizer.chat_template", Value::from(template)),
    ])
}

#[test]
fn a_lookalike_is_not_a_known_model() {
    // Another vocabulary, another architecture, another size, or the base model.
    // Another vocabulary, another architecture, another size, or a chat template that is
    // not the instruction-tuned model's (the base model has none).
    let cases = [
        smollm2(&[("tokenizer.ggml.tokens", vocab(1000))]),
        smollm2(&[("general.architecture", Value::from("qwen2"))]),
        smollm2(&[("general.name", Value::from("SmolLM2 360M Instruct"))]),
        smollm2(&[(
            "tokenizer.chat_template",
            Value::from("{{ messages[0]['content'] }}"),
        )]),
        metadata(&[
            ("general.architecture", Value::from("llama")),
            ("general.name", Value::from("SmolLM2 135M")),
            ("tokenizer.ggml.tokens", vocab(49152)),
        ]),
    ];
    for m in cases {
        assert_eq!(ModelDefaults::for_model(&m).known_model, None, "{m:?}");
    }
}

#[test]
fn the_template_default_system_prompt_needs_the_template_to_have_it() {
    let qwen_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
    let d = ModelDefaults::for_model(&qwen_coder(&format!(
        "{{{{- '<|im_start|>system\\n{qwen_system}<|im_end|>' }}}}"
    )));
    assert_eq!(d.known_model, Some("qwen2.5-coder-0.5b-instruct-q4_k_m"));
    assert_eq!(d.system_prompt.value.as_deref(), Some(qwen_system));
    assert_eq!(
        (
            d.sampling.temperature.value,
            d.sampling.top_k.value,
            d.sampling.top_p.value
        ),
        (0.7, 20, 0.8)
    );
    let d = ModelDefaults::for_model(&qwen_coder("{{ messages[0]['content'] }}"));
    assert_eq!(d.known_model, Some("qwen2.5-coder-0.5b-instruct-q4_k_m"));
    assert_eq!(d.system_prompt, Sourced::new(None, Source::Generic));
    // An explicit system prompt always wins.
    let d = ModelDefaults::for_model(&smollm2(&[]));
    assert_eq!(
        d.system_prompt_or(Some("Be brief.")).as_deref(),
        Some("Be brief.")
    );
    assert_eq!(d.system_prompt_or(None).as_deref(), Some(""));
}

#[test]
fn gguf_sampling_keys_beat_the_table_and_explicit_values_beat_both() {
    let m = smollm2(&[
        ("general.sampling.temp", Value::from(0.5f32)),
        ("general.sampling.top_k", Value::from(10i32)),
        ("general.sampling.min_p", Value::from(0.1f32)),
        ("general.sampling.penalty_repeat", Value::from(1.2f32)),
        ("general.sampling.penalty_last_n", Value::from(-1i32)),
    ]);
    let d = ModelDefaults::for_model(&m);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let s = &d.sampling;
    assert_eq!(
        s.temperature,
        Sourced::new(
            0.5,
            Source::Gguf {
                key: "general.sampling.temp"
            }
        )
    );
    assert_eq!(
        s.top_k,
        Sourced::new(
            10,
            Source::Gguf {
                key: "general.sampling.top_k"
            }
        )
    );
    assert_eq!(
        s.min_p,
        Sourced::new(
            0.1,
            Source::Gguf {
                key: "general.sampling.min_p"
            }
        )
    );
    assert_eq!(
        s.repeat_penalty,
        Sourced::new(
            1.2,
            Source::Gguf {
                key: "general.sampling.penalty_repeat"
            }
        )
    );
    // -1 ("whole context") is the model's context length.
    assert_eq!(
        s.penalty_last_n,
        Sourced::new(
            8192,
            Source::Gguf {
                key: "general.sampling.penalty_last_n"
            }
        )
    );
    // Keys the file does not have keep the table's value.
    assert_eq!(
        s.top_p,
        Sourced::new(0.9, known("model card (generate example: top_p=0.9)"))
    );

    let explicit = SamplingOverrides {
        temperature: Some(1.3),
        top_p: Some(0.5),
        ..Default::default()
    };
    let s = d.sampling.with_overrides(&explicit);
    assert_eq!(s.temperature, Sourced::new(1.3, Source::Explicit));
    assert_eq!(s.top_p, Sourced::new(0.5, Source::Explicit));
    assert_eq!(
        s.top_k.source,
        Source::Gguf {
            key: "general.sampling.top_k"
        }
    );
    let c = s.config(42);
    assert_eq!(
        (
            c.temperature,
            c.top_k,
            c.top_p,
            c.min_p,
            c.repeat_penalty,
            c.penalty_last_n,
            c.seed
        ),
        (1.3, 10, 0.5, 0.1, 1.2, 8192, 42)
    );
    c.validate().unwrap();
}

#[test]
fn gguf_keys_apply_to_unknown_models_too() {
    let m = metadata(&[
        ("general.architecture", Value::from("llama")),
        ("general.sampling.top_p", Value::from(0.7f64)),
        ("general.sampling.top_k", Value::from(30u64)),
    ]);
    let d = ModelDefaults::for_model(&m);
    assert_eq!(d.known_model, None);
    assert_eq!(d.sampling.top_p.value, 0.7);
    assert_eq!(d.sampling.top_k.value, 30);
    assert_eq!(d.sampling.temperature.source, Source::Generic);
}

#[test]
fn unusable_gguf_keys_are_warnings_that_name_the_key() {
    let m = smollm2(&[
        ("general.sampling.temp", Value::from("hot")),
        ("general.sampling.top_p", Value::from(1.5f32)),
        (
            "general.sampling.min_p",
            Value::array_of(crate::gguf::ValueType::F32, [0.1f32]),
        ),
        ("general.sampling.penalty_repeat", Value::from(f32::NAN)),
        ("general.sampling.top_k", Value::from(40.5f32)),
        ("general.sampling.penalty_last_n", Value::from(-2i32)),
        ("general.sampling.mirostat", Value::from(2i32)),
        ("general.sampling.xtc_probability", Value::from(0.0f32)),
    ]);
    let d = ModelDefaults::for_model(&m);
    let messages: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
    for key in [
        "temp",
        "top_p",
        "min_p",
        "penalty_repeat",
        "top_k",
        "penalty_last_n",
        "mirostat",
    ] {
        let key = format!("general.sampling.{key}");
        assert!(
            messages.iter().any(|m| m.contains(&key)),
            "no warning names {key}: {messages:#?}"
        );
    }
    // XTC at probability 0 is off: nothing to warn about.
    assert_eq!(messages.len(), 7, "{messages:#?}");
    assert!(
        matches!(
            d.warnings[0],
            DefaultsWarning::WrongType {
                key: "general.sampling.temp",
                found: "string",
                ..
            }
        ),
        "{:?}",
        d.warnings
    );
    // Each unusable key falls back to the next source.
    assert_eq!(d.sampling.temperature.value, 0.2);
    assert_eq!(d.sampling.top_p.value, 0.9);
    assert_eq!(d.sampling.top_k.source, Source::Generic);
    assert_eq!(d.sampling.penalty_last_n.source, Source::Generic);
    d.sampling.config(0).validate().unwrap();
    // They serialize as their messages.
    let json = serde_json::to_value(&d).unwrap();
    assert!(
        json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("general.sampling.temp"),
        "{json}"
    );
}

#[test]
fn whole_context_without_a_context_length_is_a_warning() {
    let m = metadata(&[
        ("general.architecture", Value::from("llama")),
        ("general.sampling.penalty_last_n", Value::from(-1i32)),
        ("general.sampling.top_k", Value::from(-1i32)),
    ]);
    let d = ModelDefaults::for_model(&m);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0]
            .to_string()
            .contains("general.sampling.penalty_last_n")
    );
    // llama.cpp's top_k <= 0 is "off", which is 0 here.
    assert_eq!(
        d.sampling.top_k,
        Sourced::new(
            0,
            Source::Gguf {
                key: "general.sampling.top_k"
            }
        )
    );
}

#[test]
fn explicit_values_are_checked_alone_and_parsed_strictly() {
    SamplingOverrides::default().validate().unwrap();
    let e = SamplingOverrides {
        top_p: Some(0.0),
        ..Default::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("top_p"), "{e}");
    let o: SamplingOverrides = serde_json::from_str(r#"{"temperature": 0, "seed": 3}"#).unwrap();
    assert_eq!(
        o,
        SamplingOverrides {
            temperature: Some(0.0),
            seed: Some(3),
            ..Default::default()
        }
    );
    let e = serde_json::from_str::<SamplingOverrides>(r#"{"temprature": 0}"#).unwrap_err();
    assert!(e.to_string().contains("temprature"), "{e}");
    // Only what was set is written back.
    assert_eq!(
        serde_json::to_string(&o).unwrap(),
        r#"{"temperature":0.0,"seed":3}"#
    );
}

#[test]
fn every_known_model_has_valid_values_and_a_reference_for_each() {
    for known in KNOWN_MODEL_DEFAULTS {
        let mut d = ModelDefaults::generic();
        known.apply_to(&mut d, &Metadata::new());
        d.sampling
            .config(0)
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", known.name));
        for (field, _, source) in d.sampling.rows() {
            if let Source::KnownModel { reference, .. } = source {
                assert!(!reference.is_empty(), "{}: {field}", known.name);
            }
        }
    }
}

#[test]
fn the_gemma_file_is_recognised_without_a_chat_template() {
    let m = metadata(&[
        ("general.architecture", Value::from("gemma3")),
        ("general.name", Value::from("Gemma 3 270m")),
        ("general.basename", Value::from("gemma-3")),
        ("general.size_label", Value::from("270M")),
        ("tokenizer.ggml.tokens", vocab(262144)),
    ]);
    let d = ModelDefaults::for_model(&m);
    assert_eq!(d.known_model, Some("gemma-3-270m-q4_k_m"));
    let s = &d.sampling;
    assert_eq!(
        (s.temperature.value, s.top_k.value, s.top_p.value),
        (1.0, 64, 0.95)
    );
    assert_eq!(d.system_prompt, Sourced::new(None, Source::Generic));
}
