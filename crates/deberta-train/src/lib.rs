//! Training DeBERTa-v2/v3 in Rust with transformers' `Trainer` semantics.
//!
//! * [`data`]: the JSON-lines training formats of every task, tokenised and batched as
//!   transformers' example scripts prepare them (`run_glue`, `run_ner`, `run_qa`, `run_swag`,
//!   `run_mlm`).
//! * [`metrics`]: the evaluation metrics those scripts report (accuracy, macro-F1,
//!   Pearson/Spearman, seqeval's entity-level scores, SQuAD's exact match and F1, perplexity).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod data;
pub mod error;
pub mod grad;
pub mod metrics;

pub use error::{Error, Result};
pub use grad::{gradients, Gradients};
