//! `deberta serve`: one DeBERTa-v2/v3 model behind HTTP, with text-embeddings-inference's API
//! where TEI has one (`/predict`, `/rerank`, `/tokenize`, `/decode`, `/info`, `/health`,
//! `/metrics`) and the tasks TEI lacks beside it (`/fill-mask`, `/zero-shot`,
//! `/token-classify`, `/qa`, `/choice`), answering with the fields of `deberta`'s task
//! subcommands.
//!
//! The request path: [`routes`] parse and check the JSON, a concurrency permit is taken
//! ([`ServerConfig::max_concurrent_requests`], a bounded wait, then 429), the inputs are
//! tokenized on the blocking pool, and every model unit goes to one queue. A dedicated model
//! thread cuts batches from that queue by a token budget, sorts each by length and runs it as
//! sub-batches of similar length, so a batch costs about the sum of its sequences.
//!
//! ```no_run
//! use deberta_server::{Model, Server, ServerConfig};
//! use deberta_tasks::Engine;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::from_dir(
//!     "path/to/nli-model",
//!     deberta::HeadKind::SequenceClassification,
//!     &candle_core::Device::Cpu,
//! )?;
//! let server = Server::new(Model::new(engine, "f32", None)?, ServerConfig::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, deberta_server::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod batcher;
mod config;
mod error;
mod infer;
mod json;
mod metrics;
mod middleware;
mod model;
mod openapi;
mod queue;
pub mod routes;
mod server;
mod state;

pub use batcher::Health;
pub use config::ServerConfig;
pub use error::{ApiError, ErrorResponse, ErrorType, ServerError};
pub use infer::Timings;
pub use model::Model;
pub use openapi::ApiDoc;
pub use server::{run_blocking, shutdown_signal, Server};
pub use state::AppState;
