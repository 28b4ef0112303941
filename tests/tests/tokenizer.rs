//! The tokenizer on SmolLM2-135M-Instruct's GGUF vocabulary, against llama.cpp's ids.

use std::sync::OnceLock;

use serde_json::Value as Json;
use wisp_core::gguf::GgufFile;
use wisp_core::tokenizer::{ChatMessage, Tokenizer};
use wisp_tests::{model_path, reference_dir};

fn reference() -> &'static Json {
    static REFERENCE: OnceLock<Json> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let path = reference_dir().join("smollm2-135m-instruct-q4_1.json");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).expect("reference JSON parses")
    })
}

fn smollm2() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let file = reference()["model_file"].as_str().expect("model_file");
        let bytes = std::fs::read(model_path(file)).expect("model file reads");
        let gguf = GgufFile::parse(&bytes).expect("GGUF parses");
        Tokenizer::from_gguf(&gguf.metadata).expect("tokenizer builds")
    })
}

fn ids(value: &Json) -> Vec<u32> {
    value
        .as_array()
        .expect("an id list")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// (text, llama.cpp's ids) for every tokenizer case.
fn cases() -> Vec<(String, Vec<u32>)> {
    let cases = wisp_tests::reference::tokenizer_cases(reference());
    assert_eq!(cases.len(), 12);
    cases
}

#[test]
fn special_tokens_as_the_gguf_says() {
    let tok = smollm2();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    assert!(!tok.add_bos_token());
    assert_eq!(tok.token_text(1).as_deref(), Some("<|im_start|>"));
    // <|im_end|> (EOS) and <|endoftext|> (a control token) end generation; <|im_start|> not.
    assert_eq!(tok.end_of_generation_ids(), &[0, 2]);
    assert!(!tok.is_end_of_generation(1));
}

#[test]
fn every_case_matches_llama_cpp() {
    let tok = smollm2();
    let mut mismatches = Vec::new();
    for (text, want) in cases() {
        let got = tok.encode_prompt(&text).expect("encodes");
        if got != want {
            mismatches.push(format!("{text:?}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of 12 cases differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn capital_prompt_ids() {
    let capital = &reference()["capital"];
    let ids_got = smollm2()
        .encode_prompt(capital["text"].as_str().expect("text"))
        .expect("encodes");
    assert_eq!(ids_got, ids(&capital["ids"]));
    // llama.cpp's top tokens decode to the pieces it printed.
    for top in capital["llamacpp_top5_last"].as_array().expect("top5") {
        let id = top[0].as_u64().expect("id") as u32;
        assert_eq!(
            smollm2().token_piece(id).expect("decodes"),
            top[1].as_str().expect("piece")
        );
    }
}

#[test]
fn chat_template_renders_and_encodes_like_llama_cpp() {
    let chat = &reference()["chat"];
    let messages: Vec<ChatMessage> =
        serde_json::from_value(chat["messages"].clone()).expect("messages");
    let template = smollm2()
        .chat_template()
        .expect("SmolLM2 ships a chat template");
    let rendered = template.render(&messages, true).expect("renders");
    // The template adds SmolLM's default system prompt when the conversation has none.
    assert_eq!(rendered, chat["rendered"].as_str().expect("rendered"));
    assert_eq!(
        smollm2().encode_prompt(&rendered).expect("encodes"),
        ids(&chat["ids"])
    );
}

#[test]
fn decode_round_trips() {
    let tok = smollm2();
    for (text, want) in cases() {
        assert_eq!(tok.decode(&want).expect("decodes"), text);
        assert_eq!(
            tok.decode(&tok.encode_prompt(&text).expect("encodes"))
                .expect("decodes"),
            text
        );
    }
}

#[test]
fn streaming_gives_the_same_text_as_decode() {
    let tok = smollm2();
    let mut split_characters = 0;
    for (text, ids) in cases() {
        let mut stream = tok.stream_decoder();
        let mut streamed = String::new();
        for &id in &ids {
            match stream.push(id).expect("known id") {
                Some(piece) => streamed.push_str(&piece),
                None => split_characters += 1,
            }
            // Nothing emitted is ever a broken character.
            assert!(!streamed.contains('\u{FFFD}'), "{text:?}: {streamed:?}");
        }
        assert_eq!(stream.flush().expect("flushes"), None, "{text:?}");
        assert_eq!(streamed, tok.decode(&ids).expect("decodes"), "{text:?}");
    }
    // The emoji and CJK cases do split characters across tokens.
    assert!(split_characters > 0);
}
