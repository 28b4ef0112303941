//! The HTTP routes: the OpenAI endpoints under /v1 (behind the API key, when one is set),
//! /health and /metrics; every error OpenAI-shaped, every request counted.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::job::{Command, Job};
use super::json::{MAX_BODY_BYTES, OpenAiJson};
use super::request::{ChatRequest, CompletionRequest};
use super::response::{Header, model_list};
use super::state::Shared;
use super::stream;
use super::validate::{self, Plan};

type AppState = Arc<Shared>;

pub fn router(shared: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            check_api_key,
        ));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            count_request,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

async fn chat_completions(
    State(shared): State<AppState>,
    OpenAiJson(request): OpenAiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let model = shared.ready_model()?;
    // Rendering and tokenizing a long conversation is CPU work: off the async threads.
    let plan = tokio::task::spawn_blocking(move || validate::plan_chat(request, &model))
        .await
        .map_err(|e| ApiError::internal(format!("Preparing the prompt failed: {e}")))??;
    run(&shared, plan).await
}

async fn completions(
    State(shared): State<AppState>,
    OpenAiJson(request): OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let model = shared.ready_model()?;
    let plan = tokio::task::spawn_blocking(move || validate::plan_completion(request, &model))
        .await
        .map_err(|e| ApiError::internal(format!("Preparing the prompt failed: {e}")))??;
    run(&shared, plan).await
}

/// Queues a checked request and answers it, streamed or whole.
async fn run(shared: &Shared, plan: Plan) -> Result<Response, ApiError> {
    let n = plan.choices.len();
    if n > shared.admission.max() {
        // It could never fit: waiting would not help, so this is not a 429.
        return Err(ApiError::invalid(
            "n",
            format!(
                "n = {n} is more generations than this server lets wait at once ({})",
                shared.admission.max()
            ),
        ));
    }
    if !shared.admission.try_reserve(n) {
        return Err(ApiError::queue_full(shared.admission.max()));
    }
    let (events, receiver) = mpsc::unbounded_channel();
    let header = Header::new(plan.endpoint, plan.model);
    let job = Job {
        prompt: plan.prompt,
        choices: plan.choices,
        events,
        received: Instant::now(),
    };
    if shared.commands.send(Command::Run(job)).is_err() {
        shared.admission.release(n);
        return Err(ApiError::unavailable("The engine has stopped"));
    }
    let logprobs = plan.top_logprobs.is_some();
    if plan.stream {
        let sse = stream::sse(header, receiver, n, plan.include_usage, logprobs);
        Ok(sse.into_response())
    } else {
        let body = stream::collect(&header, receiver, n, logprobs).await?;
        Ok(Json(body).into_response())
    }
}

async fn models(State(shared): State<AppState>) -> Result<Response, ApiError> {
    let model = shared.ready_model()?;
    Ok(Json(model_list(&model.id, model.created)).into_response())
}

/// 200 once the model is loaded; 503 while it loads and while the server drains.
async fn health(State(shared): State<AppState>) -> Response {
    let (status, word) = if shared.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if shared.model.get().is_some() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading")
    };
    (status, Json(json!({"status": word}))).into_response()
}

async fn metrics(State(shared): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn no_route(request: Request) -> ApiError {
    ApiError::no_route(request.method().as_str(), request.uri().path())
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// With `--api-key`, a /v1 request without `Authorization: Bearer KEY` is refused before
/// anything else happens.
async fn check_api_key(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(key) = &shared.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// Compares in time that does not depend on where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts each request by route and status (unknown paths as one label, so that a scan
/// cannot grow the metrics without bound).
async fn count_request(State(shared): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    shared
        .metrics
        .request(&endpoint, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"ab", b"abc"));
    }
}
