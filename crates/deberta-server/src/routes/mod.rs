//! The HTTP routes and the middleware stack around them.

pub mod meta;
pub mod schema;
pub mod tasks;
pub mod tei;
pub mod types;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::middleware::{self, Ids, REQUEST_ID};
use crate::state::AppState;

/// Every route, without the middleware stack.
pub fn routes(state: Arc<AppState>) -> Router {
    let inference = Router::new()
        .route("/predict", post(tei::predict))
        .route("/rerank", post(tei::rerank))
        .route("/tokenize", post(tei::tokenize))
        .route("/decode", post(tei::decode))
        .route("/fill-mask", post(tasks::fill_mask))
        .route("/zero-shot", post(tasks::zero_shot))
        .route("/token-classify", post(tasks::token_classify))
        .route("/qa", post(tasks::qa))
        .route("/choice", post(tasks::choice))
        .route_layer(axum::middleware::from_fn(middleware::count));
    Router::new()
        .merge(inference)
        .route("/info", get(meta::info))
        .route("/health", get(meta::health))
        .route("/metrics", get(meta::metrics))
        .merge(crate::openapi::docs())
        .fallback(middleware::not_found)
        .with_state(state)
}

/// Wraps `router` in the middleware stack (outermost first): request id (set, echoed),
/// tracing span, panic to 500, CORS, API key, body limit.
pub fn layered(router: Router, state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    let config = &state.config;
    let mut router = router
        .layer(DefaultBodyLimit::max(config.payload_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::auth,
        ));
    if let Some(cors) = cors(&config.cors_allow_origin) {
        router = router.layer(cors);
    }
    router
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn(middleware::scope_request_id))
        .layer(TraceLayer::new_for_http().make_span_with(make_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, Ids::new()))
}

fn make_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(Any);
    Some(if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    })
}
