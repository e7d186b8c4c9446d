//! A JSON body extractor whose failures are [`ApiError`]s: the body over the payload limit is a
//! 413, malformed JSON and wrong types are 422 naming the problem. Any content type is read as
//! JSON (`curl -d` sends a form content type by default).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorType};

/// The request body parsed as `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| json_error(&e))
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorType::PayloadTooLarge,
            format!(
                "request body too large: {} (see --payload-limit)",
                e.body_text()
            ),
        )
    } else {
        ApiError::validation(format!("cannot read the request body: {}", e.body_text()))
    }
}

fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "malformed JSON",
        Category::Data => "invalid request",
    };
    ApiError::validation(format!("{what}: {e}"))
}
