//! Training DeBERTa-v2/v3 in Rust with transformers' `Trainer` semantics: the library behind
//! `deberta train` and `deberta grad`.
//!
//! * [`TrainJob`]: a run from JSON-lines files, as the CLI sets it up (label set, datasets,
//!   model, evaluator), giving a [`Trainer`].
//! * [`Trainer`]: the loop over any [`BatchSource`] (a dataset, one fixed batch, your own):
//!   gradient accumulation, global-norm clipping, [`AdamW`] at the [`Schedule`]'s learning
//!   rate, evaluation, checkpoints (`OUT/checkpoint-N`) and [`Trainer::resume`], logging to
//!   `log.jsonl` / `metrics.jsonl`, and [`plot::curves`] (`curves.png` and `curves.svg`) at the end.
//! * [`gradients`]: one training-mode forward and backward pass, gradients by transformers
//!   name (what `deberta grad` writes).
//! * [`data`]: the JSON-lines formats of every head, prepared as transformers' example scripts
//!   (`run_glue`, `run_ner`, `run_qa`, `run_swag`, `run_mlm`) prepare them.
//! * [`metrics`]: what those scripts report (accuracy, macro-F1, Pearson/Spearman, seqeval,
//!   SQuAD exact match and F1, perplexity).
//!
//! Fine-tuning the tiny committed NLI checkpoint as a sentiment classifier (the label set comes
//! from the file and is written into the saved `config.json`):
//!
//! ```
//! use candle_core::Device;
//! use deberta_train::{TrainJob, TrainOptions};
//!
//! let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");
//! let out = tempfile::tempdir()?;
//! let job = TrainJob {
//!     eval: Some(format!("{fixtures}/train/sentiment.eval.jsonl").into()),
//!     options: TrainOptions {
//!         learning_rate: 5e-3,
//!         epochs: 2.0,
//!         batch_size: 4,
//!         ..TrainOptions::default()
//!     },
//!     ..TrainJob::new(
//!         format!("{fixtures}/tasks/nli"),
//!         format!("{fixtures}/train/sentiment.train.jsonl"),
//!         out.path(),
//!     )
//! };
//! let (mut trainer, report) = job.build(&Device::Cpu)?;
//! assert_eq!(report.skipped.len(), 3); // bad lines, with their numbers
//! let summary = trainer.run()?;
//! assert_eq!(summary.steps, 10);
//! println!("loss {:?} -> {:?}, eval {:?}", summary.first_loss, summary.last_loss, summary.eval);
//! // `out` is a transformers checkpoint directory (`DebertaV2ForSequenceClassification`).
//! assert!(out.path().join("model.safetensors").is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod batches;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod grad;
pub mod init;
pub mod job;
pub mod log;
pub mod metrics;
pub mod model_load;
pub mod optim;
pub mod options;
pub mod plot;
pub mod rng;
pub mod schedule;
pub mod state;
pub mod trainer;

pub use batches::{BatchSource, DatasetBatches, FixedBatch, MicroBatch, OwnedLabels};
pub use error::{Error, Result};
pub use evaluate::DatasetEvaluator;
pub use grad::{gradients, Gradients};
pub use job::{JobReport, TrainJob};
pub use model_load::{load_model, ModelSpec};
pub use optim::{AdamW, AdamWConfig};
pub use options::TrainOptions;
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::{Evaluator, TrainSummary, Trainer};
