//! Evaluation metrics, computed as the Python tools transformers' example scripts use:
//!
//! | task | function | reference |
//! |---|---|---|
//! | sequence classification | [`accuracy`], [`macro_f1`] | `sklearn.metrics.accuracy_score`, `f1_score(average="macro")` |
//! | regression (STS-B) | [`pearson`], [`spearman`] | `scipy.stats.pearsonr`, `scipy.stats.spearmanr` |
//! | token classification | [`seqeval()`] | `seqeval.metrics` default mode (`evaluate.load("seqeval")`) |
//! | extractive QA | [`squad()`] | SQuAD v1.1 `evaluate-v1.1.py` (`evaluate.load("squad")`) |
//! | masked LM | [`perplexity`], [`masked_accuracy`] | `run_mlm`'s `exp(eval_loss)` and accuracy over labels ≠ -100 |
//!
//! Conventions. The plain functions return `f64` and never fail: a metric that is undefined
//! (empty input, zero variance, inputs of different lengths) is NaN, which [`Metrics`] writes
//! as JSON `null`. Zero divisions inside F1, precision and recall score 0, as scikit-learn and
//! seqeval do by default (`zero_division="warn"`, minus the warning). The per-task
//! `*_metrics` functions check their inputs and return an error for different lengths or no
//! example at all, so the trainer reports a mistake rather than logging NaN.

mod classification;
mod correlation;
mod mlm;
mod seqeval;
mod set;
mod squad;

pub use self::seqeval::{get_entities, seqeval, Entity, EntityScores, TypeScores};
pub use self::squad::{exact_match, normalize_answer, squad, token_f1, SquadScores};
pub use classification::{accuracy, macro_f1};
pub use correlation::{average_ranks, pearson, spearman};
pub use mlm::{masked_accuracy, perplexity, IGNORE_INDEX};
pub use set::Metrics;
