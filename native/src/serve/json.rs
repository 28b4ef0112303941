//! A JSON body extractor whose failures are OpenAI-shaped: axum's own `Json` answers
//! malformed bodies with plain text. Type errors name the field at fault (`param`), found
//! with serde_path_to_error.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use super::request::RequestBody;

/// The largest body accepted; larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A request body parsed as `T`.
pub struct OpenAiJson<T>(pub T);

impl<S: Send + Sync, T: RequestBody> FromRequest<S> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Refused from the announced length at once, not after reading up to the limit.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(MAX_BODY_BYTES)
            } else {
                ApiError::bad_request(format!("Could not read the request body: {rejection}"))
            }
        })?;
        parse_request(&bytes).map(OpenAiJson)
    }
}

/// Parses a request body: its own fields, then the shared ones from the same object.
pub fn parse_request<T: RequestBody>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object",
        ));
    }
    let mut request: T = typed(&value)?;
    *request.common_mut() = typed(&value)?;
    Ok(request)
}

/// Parses a body as `T` (for parts of a request and tests).
#[cfg(test)]
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))?;
    typed(&value)
}

/// `value` as `T`, naming the field at fault when a value does not fit.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner();
        let param = field_of(&e.path().to_string(), &inner.to_string());
        ApiError::invalid(param, format!("Invalid request: {inner}"))
    })
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
        parse_request::<ChatRequest>(body.as_bytes()).expect_err("should be refused")
    }

    #[test]
    fn broken_json_is_a_400_without_a_param() {
        let e = chat_error("{\"messages\": [");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.param, None);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert!(parse_request::<ChatRequest>(b"{} {}").is_err());
        assert!(parse_request::<ChatRequest>(b"[1]").is_err());
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(chat_error("{}").param.as_deref(), Some("messages"));
        let e = chat_error(r#"{"messages": [{"content": "hi"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse_request::<CompletionRequest>(b"{\"max_tokens\": 3}").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    #[test]
    fn a_wrong_type_is_named_also_among_the_shared_fields() {
        let e = chat_error(r#"{"messages": [], "temperature": "hot"}"#);
        assert_eq!(e.param.as_deref(), Some("temperature"), "{e:?}");
        let e = chat_error(r#"{"messages": [], "max_tokens": -1}"#);
        assert_eq!(e.param.as_deref(), Some("max_tokens"), "{e:?}");
        let e = chat_error(r#"{"messages": [], "n": "two"}"#);
        assert_eq!(e.param.as_deref(), Some("n"), "{e:?}");
        let e = chat_error(r#"{"messages": "hi"}"#);
        assert_eq!(e.param.as_deref(), Some("messages"), "{e:?}");
    }

    #[test]
    fn prompts_and_stops_take_both_forms() {
        let r: CompletionRequest =
            parse_request(br#"{"prompt": ["a"], "stop": "x", "model": "m"}"#).unwrap();
        assert!(matches!(r.prompt, super::super::request::Prompt::Texts(ref v) if v == &["a"]));
        assert_eq!(r.common.stop.unwrap().into_vec(), ["x"]);
        let r: ChatRequest =
            parse_request(br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "stop": ["a", "b"]}"#)
                .unwrap();
        assert_eq!(r.common.stop.unwrap().into_vec(), ["a", "b"]);
    }
}
