//! The OpenAPI document (`/api-doc/openapi.json`) and Swagger UI (`/docs`).

use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{ErrorResponse, ErrorType};
use crate::routes::{meta, schema, tasks, tei, types};
use crate::state::AppState;

/// The API of `deberta serve`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "deberta serve",
        description = "DeBERTa-v2/v3 over HTTP: text-embeddings-inference's routes (`/predict`, \
            `/rerank`, `/tokenize`, `/decode`, `/info`, `/health`, `/metrics`) and every other \
            task (`/fill-mask`, `/zero-shot`, `/token-classify`, `/qa`, `/choice`). Errors are \
            `{error, error_type}`: 400 Empty, 401 Unauthorized, 404 NotFound, 413 \
            PayloadTooLarge (body over --payload-limit or more inputs than \
            --max-client-batch-size), 422 Validation / Tokenizer, 424 Backend, 429 Overloaded, \
            500 Internal, 503 Unhealthy. With --api-key, every route but /health needs \
            `Authorization: Bearer <key>`."
    ),
    paths(
        tei::predict, tei::rerank, tei::tokenize, tei::decode,
        tasks::fill_mask, tasks::zero_shot, tasks::token_classify, tasks::qa, tasks::choice,
        meta::info, meta::health, meta::metrics,
    ),
    components(schemas(
        ErrorResponse, ErrorType, types::TruncationDirection,
        tei::PredictRequest, tei::PredictResponse, tei::Prediction, tei::RerankRequest,
        tei::Rank, tei::TokenizeRequest, tei::SimpleToken, tei::DecodeRequest,
        tasks::FillMaskRequest, tasks::ZeroShotRequest, tasks::TokenClassifyRequest,
        tasks::QaRequest, tasks::ChoiceRequest,
        schema::FillMaskPrediction, schema::ZeroShotOutput, schema::Entity, schema::Answer,
        schema::ScoredChoice, schema::QaInput, schema::ChoiceInput, meta::Info,
    )),
    tags(
        (name = "TEI", description = "text-embeddings-inference's routes and JSON"),
        (name = "Tasks", description = "The tasks TEI lacks, as `deberta`'s subcommands answer them"),
    )
)]
pub struct ApiDoc;

/// `/docs` (Swagger UI, assets built into the binary) and `/api-doc/openapi.json`.
pub(crate) fn docs() -> Router<Arc<AppState>> {
    SwaggerUi::new("/docs")
        .url("/api-doc/openapi.json", ApiDoc::openapi())
        .into()
}
