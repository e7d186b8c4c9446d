//! Request ids, bearer-token auth, request counting, and the 500 of a panicking handler.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::{ApiError, ErrorType};
use crate::metrics;
use crate::state::AppState;

/// The header carrying the request id (echoed when the client sends one).
pub(crate) const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request being handled (read by the panic handler).
    static CURRENT_ID: String;
}

/// Request ids `<process start, hex>-<counter>`: unique per process without a UUID crate.
#[derive(Clone)]
pub(crate) struct Ids {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Ids {
    pub(crate) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ids {
            prefix: format!("{nanos:x}").into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for Ids {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// Runs the rest of the stack with the request id in a task-local.
pub(crate) async fn scope_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    CURRENT_ID.scope(id, next.run(req)).await
}

/// The response to a panic in a handler: a 500 naming the request id.
pub(crate) fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    let id = CURRENT_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".into());
    tracing::error!(request_id = %id, "handler panicked: {detail}");
    metrics::failure(ErrorType::Internal.metric_label());
    ApiError::new(
        ErrorType::Internal,
        format!("internal error (request id {id})"),
    )
    .into_response()
}

/// `Authorization: Bearer <--api-key>` on every route but `/health`.
pub(crate) async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same(token.as_bytes(), key.as_bytes()) => next.run(req).await,
        _ => {
            metrics::failure(ErrorType::Unauthorized.metric_label());
            ApiError::new(
                ErrorType::Unauthorized,
                "missing or wrong API key (send `Authorization: Bearer <key>`)",
            )
            .into_response()
        }
    }
}

/// Equality in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `te_request_count`, `te_request_success` and `te_request_failure` of the inference routes.
pub(crate) async fn count(req: Request, next: Next) -> Response {
    let route = route_name(req.extensions().get::<MatchedPath>());
    metrics::request(route);
    let response = next.run(req).await;
    match response.extensions().get::<ErrorType>() {
        Some(kind) => metrics::failure(kind.metric_label()),
        None if response.status().is_success() => metrics::success(route),
        None => {}
    }
    response
}

fn route_name(path: Option<&MatchedPath>) -> &'static str {
    const ROUTES: [&str; 9] = [
        "predict",
        "rerank",
        "tokenize",
        "decode",
        "fill-mask",
        "zero-shot",
        "token-classify",
        "qa",
        "choice",
    ];
    let path = path.map_or("", |p| p.as_str().trim_start_matches('/'));
    ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other")
}

/// The JSON 404 of unknown routes.
pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorType::NotFound,
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_compares_bytes() {
        assert!(super::same(b"abc", b"abc"));
        assert!(!super::same(b"abc", b"abd"));
        assert!(!super::same(b"abc", b"ab"));
    }
}
