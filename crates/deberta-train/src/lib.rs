//! Training DeBERTa-v2/v3 in Rust with transformers' `Trainer` semantics.
//!
//! * [`data`]: the JSON-lines training formats of every task, tokenised and batched as
//!   transformers' example scripts prepare them (`run_glue`, `run_ner`, `run_qa`, `run_swag`,
//!   `run_mlm`).
//! * [`metrics`]: the evaluation metrics those scripts report (accuracy, macro-F1,
//!   Pearson/Spearman, seqeval's entity-level scores, SQuAD's exact match and F1, perplexity).
//! * [`grad`]: one training-mode forward and backward pass, gradients by transformers name.
//! * [`optim`], [`schedule`]: `torch.optim.AdamW` with the Trainer's parameter groups,
//!   layer-wise lr decay and gradient clipping; transformers' warmup schedules.
//! * [`trainer`]: the loop (accumulation, evaluation, checkpoints, `--resume`), logging to
//!   `log.jsonl` / `metrics.jsonl`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod batches;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod grad;
pub mod init;
pub mod log;
pub mod metrics;
pub mod model_load;
pub mod optim;
pub mod options;
pub mod rng;
pub mod schedule;
pub mod state;
pub mod trainer;

pub use batches::{BatchSource, DatasetBatches, FixedBatch, MicroBatch, OwnedLabels};
pub use error::{Error, Result};
pub use evaluate::DatasetEvaluator;
pub use grad::{gradients, Gradients};
pub use model_load::{load_model, ModelSpec};
pub use optim::{AdamW, AdamWConfig};
pub use options::TrainOptions;
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::{Evaluator, TrainSummary, Trainer};
