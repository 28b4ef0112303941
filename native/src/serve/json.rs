//! A JSON body extractor whose failures are OpenAI-shaped: axum's own `Json` answers
//! malformed bodies with plain text. Type errors name the field at fault (`param`), found
//! with serde_path_to_error.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest body accepted; larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A request body parsed as `T`.
pub struct OpenAiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(MAX_BODY_BYTES)
            } else {
                ApiError::bad_request(format!("Could not read the request body: {rejection}"))
            }
        })?;
        parse(&bytes).map(OpenAiJson)
    }
}

/// Parses a body, naming the field at fault when the JSON is valid but a value is not.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("The request body is not valid JSON: {inner}"));
        }
        let param = field_of(&e.path().to_string(), &inner.to_string());
        ApiError::invalid(param, format!("Invalid request: {inner}"))
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The field an error is about: its path, or for a missing field the field itself
/// (serde reports it at the path of the object that lacks it).
fn field_of(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let path = path.trim_start_matches('.');
    match (missing, path) {
        (Some(field), "") => field.to_string(),
        (Some(field), parent) => format!("{parent}.{field}"),
        (None, path) => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::{ChatRequest, CompletionRequest};
    use super::*;

    fn chat_error(body: &str) -> ApiError {
        parse::<ChatRequest>(body.as_bytes()).expect_err("should be refused")
    }

    #[test]
    fn broken_json_is_a_400_without_a_param() {
        let e = chat_error("{\"messages\": [");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param, None);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert!(parse::<ChatRequest>(b"{} {}").is_err());
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(chat_error("{}").param.as_deref(), Some("messages"));
        let e = chat_error(r#"{"messages": [{"content": "hi"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse::<CompletionRequest>(b"{\"max_tokens\": 3}").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    #[test]
    fn a_wrong_type_is_named_also_among_the_shared_fields() {
        let e = chat_error(r#"{"messages": [], "temperature": "hot"}"#);
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e:?}");
        let e = chat_error(r#"{"messages": [], "max_tokens": -1}"#);
        assert_eq!(e.param.as_deref(), Some("max_tokens"), "{e:?}");
        let e = chat_error(r#"{"messages": "hi"}"#);
        assert_eq!(e.param.as_deref(), Some("messages"), "{e:?}");
    }

    #[test]
    fn prompts_and_stops_take_both_forms() {
        let r: CompletionRequest =
            parse(br#"{"prompt": ["a"], "stop": "x", "model": "m"}"#).unwrap();
        assert!(matches!(r.prompt, super::super::request::Prompt::Texts(ref v) if v == &["a"]));
        assert_eq!(r.common.stop.unwrap().into_vec(), ["x"]);
        let r: ChatRequest =
            parse(br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "stop": ["a", "b"]}"#)
                .unwrap();
        assert_eq!(r.common.stop.unwrap().into_vec(), ["a", "b"]);
    }
}
