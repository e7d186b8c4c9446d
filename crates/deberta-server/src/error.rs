//! Errors: the `{error, error_type}` body every failed request gets, with TEI's status codes,
//! and the errors of starting a server.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The kind of a failed request, spelled on the wire as TEI spells it (`"Validation"`, ...).
///
/// | error_type | status | when |
/// |---|---|---|
/// | `Empty` | 400 | no input, or an empty text |
/// | `Unauthorized` | 401 | `--api-key` set and the bearer token missing or wrong |
/// | `NotFound` | 404 | no such route |
/// | `PayloadTooLarge` | 413 | body over `--payload-limit`, or more inputs than `--max-client-batch-size` |
/// | `Validation` | 422 | malformed JSON, wrong types, bad options, input too long, wrong head |
/// | `Tokenizer` | 422 | the tokenizer failed on an input |
/// | `Backend` | 424 | the forward pass failed |
/// | `Overloaded` | 429 | no concurrency permit within `--queue-timeout-ms` |
/// | `Internal` | 500 | a handler panicked (the body names the request id) |
/// | `Unhealthy` | 503 | model not loaded and warmed up yet, or the model thread is gone |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorType {
    /// 503.
    Unhealthy,
    /// 424.
    Backend,
    /// 429.
    Overloaded,
    /// 422.
    Validation,
    /// 422.
    Tokenizer,
    /// 400.
    Empty,
    /// 413.
    PayloadTooLarge,
    /// 401.
    Unauthorized,
    /// 404.
    NotFound,
    /// 500.
    Internal,
}

impl ErrorType {
    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Validation | ErrorType::Tokenizer => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Empty => StatusCode::BAD_REQUEST,
            ErrorType::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The label of `te_request_failure{err=...}`.
    pub fn metric_label(self) -> &'static str {
        match self {
            ErrorType::Unhealthy => "unhealthy",
            ErrorType::Backend => "backend",
            ErrorType::Overloaded => "overloaded",
            ErrorType::Validation => "validation",
            ErrorType::Tokenizer => "tokenization",
            ErrorType::Empty => "empty",
            ErrorType::PayloadTooLarge => "batch_size",
            ErrorType::Unauthorized => "unauthorized",
            ErrorType::NotFound => "not_found",
            ErrorType::Internal => "internal",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"error": "`inputs` cannot be empty", "error_type": "Empty"}))]
pub struct ErrorResponse {
    /// What went wrong, naming the field or limit.
    pub error: String,
    /// The kind, which fixes the status code.
    pub error_type: ErrorType,
}

/// A failed request: becomes its status code and an [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind.
    pub kind: ErrorType,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// A 422 `Validation` error.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Validation, message)
    }

    /// A 400 `Empty` error.
    pub fn empty(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Empty, message)
    }

    /// A 424 `Backend` error.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Backend, message)
    }

    /// A 429 `Overloaded` error.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Overloaded, message)
    }
}

impl From<deberta_tasks::Error> for ApiError {
    fn from(e: deberta_tasks::Error) -> Self {
        use deberta_tasks::Error as E;
        let kind = match &e {
            E::Input { .. } | E::Option { .. } => ErrorType::Validation,
            E::Tokenizer(_) => ErrorType::Tokenizer,
            E::Model(_) | E::Hub { .. } | E::Deberta(_) | E::Candle(_) => ErrorType::Backend,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<deberta_tokenizer::Error> for ApiError {
    fn from(e: deberta_tokenizer::Error) -> Self {
        ApiError::new(ErrorType::Tokenizer, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: self.message,
            error_type: self.kind,
        };
        let mut response = (self.kind.status(), Json(body)).into_response();
        response.extensions_mut().insert(self.kind);
        response
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range or inconsistent.
    #[error("invalid setting `{setting}`: {reason}")]
    Config {
        /// The flag.
        setting: String,
        /// What was wrong.
        reason: String,
    },
    /// The model or tokenizer could not be loaded.
    #[error("loading the model: {0}")]
    Load(#[from] deberta_tasks::Error),
    /// The configuration of the model could not be read.
    #[error("reading the model config: {0}")]
    Model(#[from] deberta::Error),
    /// Binding the address, or serving, failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// A [`ServerError::Config`].
    pub fn config(setting: &str, reason: impl Into<String>) -> Self {
        ServerError::Config {
            setting: setting.to_string(),
            reason: reason.into(),
        }
    }
}
