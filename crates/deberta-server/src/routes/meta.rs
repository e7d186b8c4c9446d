//! `GET /info`, `/health` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use deberta::HeadKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorResponse, ErrorType};
use crate::state::AppState;

/// What the server runs and its limits (TEI's `Info` fields, plus the head and routes).
#[derive(Debug, Serialize, ToSchema)]
pub struct Info {
    /// The `--model` given.
    pub model_id: String,
    /// Always null (no hub revision is tracked).
    pub model_sha: Option<String>,
    /// The compute type of the encoder's linear layers (`f32`, `bf16`, `int8`).
    pub model_dtype: String,
    /// `{"classifier": {id2label, label2id}}`, `{"reranker": ...}` (one label), or
    /// `{"fill_mask"|"token_classifier"|"question_answering"|"multiple_choice": {...}}`.
    #[schema(value_type = Object)]
    pub model_type: serde_json::Value,
    /// transformers' class of the loaded head.
    pub head: String,
    /// The task routes this head serves.
    pub routes: Vec<String>,
    /// `--max-concurrent-requests`.
    pub max_concurrent_requests: usize,
    /// The longest input in tokens.
    pub max_input_length: usize,
    /// `--max-batch-tokens`.
    pub max_batch_tokens: usize,
    /// `--max-batch-requests`.
    pub max_batch_requests: Option<usize>,
    /// `--max-client-batch-size`.
    pub max_client_batch_size: usize,
    /// `--auto-split`.
    pub auto_split: bool,
    /// `--auto-truncate`.
    pub auto_truncate: bool,
    /// `--payload-limit` in bytes.
    pub payload_limit: usize,
    /// `--queue-timeout-ms`.
    pub queue_timeout_ms: u64,
    /// Tokenization runs on the blocking pool (no fixed worker count).
    pub tokenization_workers: Option<usize>,
    /// This server's version.
    pub version: &'static str,
    /// Always null.
    pub sha: Option<&'static str>,
    /// Always null.
    pub docker_label: Option<&'static str>,
}

/// The model and the limits.
#[utoipa::path(get, path = "/info", tag = "TEI", responses((status = 200, description = "Served model info", body = Info)))]
pub async fn info(State(state): State<Arc<AppState>>) -> Json<Info> {
    Json(build_info(&state))
}

fn build_info(state: &AppState) -> Info {
    let model = &state.model;
    let c = &state.config;
    Info {
        model_id: c.model_id.clone(),
        model_sha: None,
        model_dtype: model.dtype().to_string(),
        model_type: model_type(state),
        head: model.kind().class_name().to_string(),
        routes: routes_of(model.kind())
            .iter()
            .map(|r| r.to_string())
            .collect(),
        max_concurrent_requests: c.max_concurrent_requests,
        max_input_length: model.max_input_length(),
        max_batch_tokens: c.max_batch_tokens,
        max_batch_requests: c.max_batch_requests,
        max_client_batch_size: c.max_client_batch_size,
        auto_split: c.auto_split,
        auto_truncate: c.auto_truncate,
        payload_limit: c.payload_limit,
        queue_timeout_ms: c.queue_timeout.as_millis() as u64,
        tokenization_workers: None,
        version: env!("CARGO_PKG_VERSION"),
        sha: None,
        docker_label: None,
    }
}

/// The task routes a head serves (`/tokenize`, `/decode` serve every head).
pub(crate) fn routes_of(kind: HeadKind) -> &'static [&'static str] {
    match kind {
        HeadKind::SequenceClassification => &["/predict", "/rerank", "/zero-shot"],
        HeadKind::MaskedLm => &["/fill-mask"],
        HeadKind::TokenClassification => &["/token-classify"],
        HeadKind::QuestionAnswering => &["/qa"],
        HeadKind::MultipleChoice => &["/choice"],
        HeadKind::Base => &[],
    }
}

fn model_type(state: &AppState) -> serde_json::Value {
    let config = state.model.engine().model().config();
    let labels = || {
        let n = config.num_labels();
        let id2label: BTreeMap<String, String> = (0..n)
            .map(|i| (i.to_string(), config.label_name(i)))
            .collect();
        let label2id: BTreeMap<String, usize> = (0..n).map(|i| (config.label_name(i), i)).collect();
        serde_json::json!({ "id2label": id2label, "label2id": label2id })
    };
    let (key, value) = match state.model.kind() {
        HeadKind::SequenceClassification if config.num_labels() == 1 => ("reranker", labels()),
        HeadKind::SequenceClassification => ("classifier", labels()),
        HeadKind::TokenClassification => ("token_classifier", labels()),
        HeadKind::MaskedLm => ("fill_mask", serde_json::json!({})),
        HeadKind::QuestionAnswering => ("question_answering", serde_json::json!({})),
        HeadKind::MultipleChoice => ("multiple_choice", serde_json::json!({})),
        HeadKind::Base => ("base", serde_json::json!({})),
    };
    serde_json::json!({ key: value })
}

/// 200 once the model is loaded and a warm-up forward pass ran; 503 before that or when the
/// model thread has stopped. Needs no API key.
#[utoipa::path(get, path = "/health", tag = "TEI", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Not ready", body = ErrorResponse),
))]
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.health.is_ready() {
        StatusCode::OK.into_response()
    } else {
        ApiError::new(ErrorType::Unhealthy, "the model is not ready").into_response()
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "TEI", responses((status = 200, description = "Prometheus metrics", body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
