//! Task pipelines over DeBERTa-v2/v3 checkpoints: text in, answers out, with the fields and
//! values of transformers' pipelines of the same name.
//!
//! | task | type | transformers |
//! |---|---|---|
//! | fill-mask | [`FillMask`] | `FillMaskPipeline` (5.24) |
//! | text classification (texts, pairs) | [`TextClassification`] | `TextClassificationPipeline` (5.24) |
//! | zero-shot classification (NLI) | [`ZeroShot`] | `ZeroShotClassificationPipeline` (5.24) |
//! | token classification / NER | [`TokenClassification`] | `TokenClassificationPipeline` (5.24) |
//! | extractive question answering | [`QuestionAnswering`] | `QuestionAnsweringPipeline` (4.57.6; gone in 5.x) |
//! | multiple choice | [`MultipleChoice`] | none (softmax over `DebertaV2ForMultipleChoice` logits) |
//!
//! Each pipeline loads a checkpoint directory (model and tokenizer), takes one input (`run`)
//! or many (`run_batch`: sorted by length, padded, batched; one `Result` per input, in
//! order, so a bad input fails alone), and returns serde-serialisable outputs. [`resolve_model`]
//! turns a hub id into a directory of the HuggingFace cache.
//!
//! ```
//! use candle_core::Device;
//! use deberta_tasks::{ZeroShot, ZeroShotInput, ZeroShotOptions};
//!
//! # fn main() -> deberta_tasks::Result<()> {
//! // A tiny random NLI checkpoint committed with the repository (use e.g. a downloaded
//! // MoritzLaurer/DeBERTa-v3-base-mnli-fever-anli for real answers).
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/tasks/nli");
//! let pipeline = ZeroShot::from_dir(dir, &Device::Cpu)?;
//! let options = ZeroShotOptions {
//!     candidate_labels: vec!["sports".into(), "politics".into()],
//!     ..Default::default()
//! };
//! let input = ZeroShotInput { text: "The match ended 3-1.".into(), candidate_labels: None };
//! let out = pipeline.run(&input, &options)?;
//! assert_eq!(out.labels.len(), 2);
//! println!("{}", serde_json::to_string(&out).unwrap_or_default());
//! # Ok(())
//! # }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod engine;
mod error;
pub mod fill_mask;
pub mod hub;
pub mod multiple_choice;
pub mod question_answering;
pub mod text_classification;
pub mod token_classification;
pub mod util;
pub mod zero_shot;

pub use engine::{Engine, EngineOptions, Feature, Staged, UnitOutput};
pub use error::{Error, Result};
pub use fill_mask::{FillMask, FillMaskOptions, FillMaskOutput, FillMaskPrediction};
pub use hub::{resolve_model, HubError};
pub use multiple_choice::{ChoiceInput, MultipleChoice, ScoredChoice};
pub use question_answering::{Answer, QaInput, QaOptions, QaOutput, QuestionAnswering};
pub use text_classification::{
    ClassifyInput, ClassifyOptions, ClassifyOutput, LabelScore, ScoreFunction, TextClassification,
    TopK,
};
pub use token_classification::{Aggregation, Entity, NerOptions, TokenClassification};
pub use zero_shot::{CandidateLabels, ZeroShot, ZeroShotInput, ZeroShotOptions, ZeroShotOutput};
