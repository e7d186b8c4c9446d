//! The server's limits and settings (the flags of `deberta serve`).

use std::time::Duration;

use crate::error::ServerError;

/// Limits and settings, with TEI's defaults where TEI has the setting.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most tokens in one batch of the model thread (sum of the sequences' lengths).
    pub max_batch_tokens: usize,
    /// Most model units (texts, pairs, windows, questions) in one batch; `None`: no limit
    /// beyond the token budget.
    pub max_batch_requests: Option<usize>,
    /// Client requests served at once; more wait up to `queue_timeout`, then get 429.
    pub max_concurrent_requests: usize,
    /// Most inputs in one client request (texts, rerank texts, zero-shot labels per text).
    pub max_client_batch_size: usize,
    /// Split client batches over `max_client_batch_size` instead of refusing them with 413.
    pub auto_split: bool,
    /// Longest input in tokens; `None`: the tokenizer's `model_max_length`, else the model's
    /// `max_position_embeddings`.
    pub max_input_length: Option<usize>,
    /// Truncate inputs over `max_input_length` when the request does not say (`truncate`).
    pub auto_truncate: bool,
    /// Largest request body in bytes.
    pub payload_limit: usize,
    /// How long a request waits for a concurrency permit before 429.
    pub queue_timeout: Duration,
    /// Bearer token every route but `/health` requires.
    pub api_key: Option<String>,
    /// Origins allowed by CORS (`*` for any); none: no CORS headers.
    pub cors_allow_origin: Vec<String>,
    /// The model id `/info` reports.
    pub model_id: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_batch_tokens: 16384,
            max_batch_requests: None,
            max_concurrent_requests: 512,
            max_client_batch_size: 32,
            auto_split: false,
            max_input_length: None,
            auto_truncate: false,
            payload_limit: 2_000_000,
            queue_timeout: Duration::from_millis(2000),
            api_key: None,
            cors_allow_origin: Vec::new(),
            model_id: String::new(),
        }
    }
}

impl ServerConfig {
    /// Checks the limits against each other and the model's longest input.
    pub fn validate(&self, max_input_length: usize) -> Result<(), ServerError> {
        let positive = [
            ("--max-batch-tokens", self.max_batch_tokens),
            ("--max-concurrent-requests", self.max_concurrent_requests),
            ("--max-client-batch-size", self.max_client_batch_size),
            ("--payload-limit", self.payload_limit),
            ("--max-input-length", max_input_length),
        ];
        for (flag, value) in positive {
            if value == 0 {
                return Err(ServerError::config(flag, "must be at least 1"));
            }
        }
        if self.max_batch_requests == Some(0) {
            return Err(ServerError::config(
                "--max-batch-requests",
                "must be at least 1",
            ));
        }
        if max_input_length > self.max_batch_tokens {
            return Err(ServerError::config(
                "--max-batch-tokens",
                format!(
                    "{} is less than the maximum input length {max_input_length}: \
                     raise it or lower --max-input-length",
                    self.max_batch_tokens
                ),
            ));
        }
        Ok(())
    }
}
