//! What every handler shares.

use std::sync::Arc;

use deberta_tokenizer::Side;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::batcher::Health;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::infer::Infer;
use crate::model::Model;

/// The model, the limits, the queue and the health flag.
pub struct AppState {
    pub(crate) model: Arc<Model>,
    pub(crate) config: ServerConfig,
    pub(crate) infer: Infer,
    pub(crate) health: Arc<Health>,
    pub(crate) metrics: Option<PrometheusHandle>,
}

impl AppState {
    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Takes one of the `max_concurrent_requests` slots as a request would (waiting up to the
    /// queue timeout, then 429): for maintenance, or tests of the overload path.
    pub async fn acquire_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.infer.acquire().await
    }

    /// The truncation a request asks for (`truncate`, else `--auto-truncate`), at `side`.
    pub(crate) fn truncate(&self, truncate: Option<bool>, side: Side) -> Option<Side> {
        truncate
            .unwrap_or(self.config.auto_truncate)
            .then_some(side)
    }
}
