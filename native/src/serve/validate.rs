//! A request, checked and turned into what the engine runs: the prompt's token ids and one
//! set of [`GenerateOptions`] per choice. Everything that can be refused is refused here,
//! before any work is queued, with the field at fault named.

use wisp_core::defaults::{ModelDefaults, SamplingOverrides};
use wisp_core::generate::GenerateOptions;
use wisp_core::sampling::SamplingError;
use wisp_core::speculative::{MAX_DRAFT, SpeculationOptions};
use wisp_core::tokenizer::ChatMessage;

use super::error::ApiError;
use super::model::ServedModel;
use super::request::{ChatRequest, CommonFields, CompletionRequest, Content, Message, Prompt};

/// The most choices one request may ask for.
pub const MAX_N: u32 = 16;
/// The most alternatives per position `top_logprobs` may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = wisp_core::sampling::MAX_TOP_LOGPROBS as u32;

/// Which endpoint a request came to: it decides the shapes of the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// A request ready to run.
#[derive(Debug)]
pub struct Plan {
    pub endpoint: Endpoint,
    /// The model id the answer names.
    pub model: String,
    pub prompt: Vec<u32>,
    pub choices: Vec<GenerateOptions>,
    pub stream: bool,
    /// Send a last chunk with the usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// `Some(k)`: return each token's log probability and its k best alternatives.
    pub top_logprobs: Option<usize>,
}

pub fn plan_chat(request: ChatRequest, model: &ServedModel) -> Result<Plan, ApiError> {
    let common = &request.common;
    check_common(common, model)?;
    let top_logprobs = chat_logprobs(request.logprobs, request.top_logprobs)?;
    let messages = chat_messages(&request.messages)?;
    let prompt = model.chat_prompt(&messages).map_err(|e| {
        ApiError::invalid("messages", format!("Cannot apply the chat template: {e}"))
    })?;
    finish_plan(Endpoint::Chat, common, model, prompt, top_logprobs)
}

pub fn plan_completion(request: CompletionRequest, model: &ServedModel) -> Result<Plan, ApiError> {
    let common = &request.common;
    check_common(common, model)?;
    let top_logprobs = completion_logprobs(request.logprobs)?;
    let text = prompt_text(request.prompt)?;
    let prompt = model
        .raw_prompt(&text)
        .map_err(|e| ApiError::invalid("prompt", format!("Cannot tokenize the prompt: {e}")))?;
    if prompt.is_empty() {
        return Err(ApiError::invalid("prompt", "The prompt is empty"));
    }
    finish_plan(Endpoint::Completions, common, model, prompt, top_logprobs)
}

/// The fields that need no prompt: the model's name and the ranges OpenAI documents.
fn check_common(c: &CommonFields, model: &ServedModel) -> Result<(), ApiError> {
    if let Some(name) = &c.model
        && !model.answers_to(name)
    {
        return Err(ApiError::model_not_found(name));
    }
    check_ranges(c)
}

fn check_ranges(c: &CommonFields) -> Result<(), ApiError> {
    if let Some(t) = c.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(ApiError::invalid(
            "temperature",
            format!("temperature must be between 0 and 2, not {t}"),
        ));
    }
    if let Some(p) = c.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(ApiError::invalid(
            "top_p",
            format!("top_p must be in (0, 1], not {p}"),
        ));
    }
    for (name, value) in [
        ("presence_penalty", c.presence_penalty),
        ("frequency_penalty", c.frequency_penalty),
    ] {
        if let Some(v) = value
            && !(-2.0..=2.0).contains(&v)
        {
            return Err(ApiError::invalid(
                name,
                format!("{name} must be between -2 and 2, not {v}"),
            ));
        }
    }
    if let Some(n) = c.n
        && !(1..=MAX_N).contains(&n)
    {
        return Err(ApiError::invalid(
            "n",
            format!("n must be between 1 and {MAX_N}, not {n}"),
        ));
    }
    if let (name, Some(0)) = max_tokens_field(c) {
        return Err(ApiError::invalid(
            name,
            format!("{name} must be at least 1"),
        ));
    }
    Ok(())
}

/// The field that limits the completion's length, and its value.
fn max_tokens_field(c: &CommonFields) -> (&'static str, Option<u64>) {
    match c.max_completion_tokens {
        Some(n) => ("max_completion_tokens", Some(n)),
        None => ("max_tokens", c.max_tokens),
    }
}

fn chat_logprobs(logprobs: bool, top: Option<u32>) -> Result<Option<usize>, ApiError> {
    match (logprobs, top) {
        (_, Some(k)) if k > MAX_TOP_LOGPROBS => Err(ApiError::invalid(
            "top_logprobs",
            format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, not {k}"),
        )),
        (false, Some(_)) => Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        )),
        (false, None) => Ok(None),
        (true, k) => Ok(Some(k.unwrap_or(0) as usize)),
    }
}

fn completion_logprobs(logprobs: Option<u32>) -> Result<Option<usize>, ApiError> {
    match logprobs {
        Some(k) if k > MAX_TOP_LOGPROBS => Err(ApiError::invalid(
            "logprobs",
            format!("logprobs must be between 0 and {MAX_TOP_LOGPROBS}, not {k}"),
        )),
        k => Ok(k.map(|k| k as usize)),
    }
}

/// The conversation as the chat template takes it; every message needs text.
fn chat_messages(messages: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "messages must hold at least one message",
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}].content");
            let content = match &m.content {
                None => return Err(ApiError::invalid(param, "A message needs content")),
                Some(Content::Text(text)) => text.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), &part.text) {
                            ("text", Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    param,
                                    format!("Only text content parts are supported, not {kind:?}"),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            Ok(ChatMessage::new(m.role.clone(), content))
        })
        .collect()
}

fn prompt_text(prompt: Prompt) -> Result<String, ApiError> {
    match prompt {
        Prompt::Text(text) => Ok(text),
        Prompt::Texts(mut texts) if texts.len() == 1 => Ok(texts.remove(0)),
        Prompt::Texts(_) => Err(ApiError::invalid(
            "prompt",
            "prompt must be a string or an array of one string",
        )),
    }
}

/// The server's drafter for this request: none when it sends `"speculative": false`,
/// with its draft length bounded by `speculative.n_max` / `speculative.n_min`.
fn speculation_for(
    c: &CommonFields,
    model: &ServedModel,
) -> Result<Option<SpeculationOptions>, ApiError> {
    let Some(mut spec) = model.speculation.clone() else {
        return Ok(None);
    };
    if c.speculative == Some(false) {
        return Ok(None);
    }
    if let Some(max) = c.speculative_n_max {
        if !(1..=MAX_DRAFT).contains(&max) {
            return Err(ApiError::invalid(
                "speculative.n_max",
                format!("speculative.n_max must be 1 to {MAX_DRAFT}, not {max}"),
            ));
        }
        spec.max_draft = max;
        spec.min_draft = spec.min_draft.min(max);
    }
    if let Some(min) = c.speculative_n_min {
        if !(1..=spec.max_draft).contains(&min) {
            return Err(ApiError::invalid(
                "speculative.n_min",
                format!(
                    "speculative.n_min must be 1 to speculative.n_max ({}), not {min}",
                    spec.max_draft
                ),
            ));
        }
        spec.min_draft = min;
    }
    Ok(Some(spec))
}

/// The checks that need the prompt (its length against the context) and the options of
/// each choice.
fn finish_plan(
    endpoint: Endpoint,
    c: &CommonFields,
    model: &ServedModel,
    prompt: Vec<u32>,
    top_logprobs: Option<usize>,
) -> Result<Plan, ApiError> {
    let max_tokens = max_tokens(c, prompt.len(), model.n_ctx)?;
    let n = c.n.unwrap_or(1) as usize;
    let seed = c.seed.unwrap_or_else(fresh_seed);
    let stop: Vec<String> = c
        .stop
        .clone()
        .map(|s| s.into_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let speculation = speculation_for(c, model)?;
    let mut choices = Vec::with_capacity(n);
    for i in 0..n {
        // Choice i gets seed + i, so a seeded request is reproducible choice by choice.
        let sampler = sampler_for(c, &model.defaults, seed.wrapping_add(i as u64))?;
        choices.push(GenerateOptions {
            max_tokens,
            sampler,
            stop: stop.clone(),
            cache_salt: c.cache_salt.clone(),
            top_logprobs,
            speculation: speculation.clone(),
            ..GenerateOptions::default()
        });
    }
    Ok(Plan {
        endpoint,
        model: model.id.clone(),
        prompt,
        choices,
        stream: c.stream,
        include_usage: c.stream_options.is_some_and(|o| o.include_usage),
        top_logprobs,
    })
}

/// The most tokens to generate: as asked, else until the context is full. A prompt that
/// leaves no room, or a request for more than fits, is refused before any work.
pub fn max_tokens(c: &CommonFields, prompt_len: usize, n_ctx: usize) -> Result<usize, ApiError> {
    let room = n_ctx.saturating_sub(prompt_len);
    if room == 0 {
        return Err(ApiError::bad_request(format!(
            "This model's context is {n_ctx} tokens, and the prompt has {prompt_len}: \
             there is no room for a completion"
        )));
    }
    match max_tokens_field(c) {
        (_, None) => Ok(room),
        (name, Some(asked)) => {
            if asked > room as u64 {
                let mut e = ApiError::bad_request(format!(
                    "This model's context is {n_ctx} tokens: the prompt's {prompt_len} plus \
                     {name} {asked} do not fit (at most {room} tokens can be generated)"
                ));
                e.param = Some(name.into());
                return Err(e);
            }
            Ok(asked as usize)
        }
    }
}

/// The sampler of one choice: the request's values over the model's defaults.
pub fn sampler_for(
    c: &CommonFields,
    defaults: &ModelDefaults,
    seed: u64,
) -> Result<wisp_core::sampling::SamplerConfig, ApiError> {
    let overrides = SamplingOverrides {
        temperature: c.temperature,
        // llama.cpp's server takes top_k <= 0 as off.
        top_k: c.top_k.map(|k| usize::try_from(k).unwrap_or(0)),
        top_p: c.top_p,
        min_p: c.min_p,
        repeat_penalty: c.repeat_penalty,
        presence_penalty: c.presence_penalty,
        frequency_penalty: c.frequency_penalty,
        penalty_last_n: c.repeat_last_n,
        seed: Some(seed),
    };
    let (_, config) = defaults.sampler(&overrides, seed).map_err(|e| match e {
        SamplingError::InvalidParameter { name, .. } => {
            // The request's name for the sampler's field.
            let param = if name == "penalty_last_n" {
                "repeat_last_n"
            } else {
                name
            };
            ApiError::invalid(param, e.to_string())
        }
        other => ApiError::bad_request(other.to_string()),
    })?;
    Ok(config)
}

/// A seed for a request that gives none: from the OS, else from the clock.
fn fresh_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => crate::common::random_seed(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::json::parse;
    use super::*;

    fn common(json: &str) -> CommonFields {
        parse(json.as_bytes()).unwrap()
    }

    fn refused_param(json: &str) -> Option<String> {
        check_ranges(&common(json)).expect_err(json).param
    }

    #[test]
    fn values_out_of_range_name_their_field() {
        for (json, param) in [
            (r#"{"temperature": -0.1}"#, "temperature"),
            (r#"{"temperature": 2.5}"#, "temperature"),
            (r#"{"top_p": 0}"#, "top_p"),
            (r#"{"top_p": 1.5}"#, "top_p"),
            (r#"{"n": 0}"#, "n"),
            (r#"{"n": 17}"#, "n"),
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"max_completion_tokens": 0}"#, "max_completion_tokens"),
            (r#"{"presence_penalty": 3}"#, "presence_penalty"),
        ] {
            assert_eq!(refused_param(json).as_deref(), Some(param), "{json}");
        }
        assert!(check_ranges(&common(r#"{"temperature": 0, "top_p": 1, "n": 16}"#)).is_ok());
    }

    #[test]
    fn the_context_bounds_prompt_plus_max_tokens() {
        assert_eq!(max_tokens(&common("{}"), 10, 64).unwrap(), 54);
        assert_eq!(
            max_tokens(&common(r#"{"max_tokens": 54}"#), 10, 64).unwrap(),
            54
        );
        let e = max_tokens(&common(r#"{"max_tokens": 55}"#), 10, 64).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("context"), "{}", e.message);
        assert!(max_tokens(&common("{}"), 64, 64).is_err());
        // An absurd value is the same refusal, not an overflow.
        assert!(max_tokens(&common(r#"{"max_tokens": 18446744073709551615}"#), 1, 64).is_err());
    }

    #[test]
    fn unset_sampling_values_are_the_models_and_set_ones_win() {
        let defaults = ModelDefaults::generic();
        let config = sampler_for(&common("{}"), &defaults, 5).unwrap();
        assert_eq!(
            config,
            wisp_core::sampling::SamplerConfig {
                seed: 5,
                ..Default::default()
            }
        );
        let config = sampler_for(
            &common(r#"{"temperature": 0, "top_k": -1, "min_p": 0.1, "repeat_penalty": 1.1}"#),
            &defaults,
            5,
        )
        .unwrap();
        assert_eq!(
            (config.temperature, config.top_k, config.min_p),
            (0.0, 0, 0.1)
        );
        assert_eq!(config.repeat_penalty, 1.1);
        let e = sampler_for(&common(r#"{"min_p": 2}"#), &defaults, 5).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("min_p"));
    }

    #[test]
    fn logprobs_are_bounded() {
        assert_eq!(chat_logprobs(false, None).unwrap(), None);
        assert_eq!(chat_logprobs(true, None).unwrap(), Some(0));
        assert_eq!(chat_logprobs(true, Some(5)).unwrap(), Some(5));
        assert_eq!(
            chat_logprobs(true, Some(21)).unwrap_err().param.as_deref(),
            Some("top_logprobs")
        );
        assert!(chat_logprobs(false, Some(2)).is_err());
        assert_eq!(completion_logprobs(Some(3)).unwrap(), Some(3));
        assert!(completion_logprobs(Some(21)).is_err());
    }

    #[test]
    fn messages_need_content() {
        let request: ChatRequest = parse(br#"{"messages": []}"#).unwrap();
        assert_eq!(
            chat_messages(&request.messages)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages")
        );
        let request: ChatRequest =
            parse(br#"{"messages": [{"role": "user", "content": "a"}, {"role": "user"}]}"#)
                .unwrap();
        assert_eq!(
            chat_messages(&request.messages)
                .unwrap_err()
                .param
                .as_deref(),
            Some("messages[1].content")
        );
        let request: ChatRequest = parse(
            br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            chat_messages(&request.messages).unwrap(),
            [ChatMessage::new("user", "ab")]
        );
    }

    #[test]
    fn prompts_are_one_string() {
        assert_eq!(prompt_text(Prompt::Texts(vec!["a".into()])).unwrap(), "a");
        assert!(prompt_text(Prompt::Texts(vec!["a".into(), "b".into()])).is_err());
    }
}
