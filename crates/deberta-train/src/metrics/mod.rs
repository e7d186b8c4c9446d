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

use crate::error::{Error, Result};

/// `accuracy` and `macro_f1` of class predictions.
///
/// Errors when the lengths differ or there is no example.
pub fn classification_metrics(predictions: &[usize], gold: &[usize]) -> Result<Metrics> {
    check_lengths("classification", predictions.len(), gold.len())?;
    Ok(Metrics::new()
        .with("accuracy", accuracy(predictions, gold))
        .with("macro_f1", macro_f1(predictions, gold)))
}

/// `pearson` and `spearmanr` (`run_glue`'s STS-B names) of regression outputs; NaN where a
/// correlation is undefined (a constant input, a single example).
///
/// Errors when the lengths differ or there is no example.
pub fn regression_metrics(predictions: &[f64], gold: &[f64]) -> Result<Metrics> {
    check_lengths("regression", predictions.len(), gold.len())?;
    Ok(Metrics::new()
        .with("pearson", pearson(predictions, gold))
        .with("spearmanr", spearman(predictions, gold)))
}

/// `precision`, `recall`, `f1` (entity level, micro-averaged) and `accuracy` (token level):
/// the four numbers `run_ner` reports. Errors as [`seqeval()`] does; no sentence at all is an
/// error too.
pub fn ner_metrics(gold: &[Vec<String>], predicted: &[Vec<String>]) -> Result<Metrics> {
    check_lengths("ner", predicted.len(), gold.len())?;
    Ok(seqeval(gold, predicted)?.to_metrics(false))
}

/// `exact_match` and `f1` (0..=100) of SQuAD v1.1. Errors as [`squad()`] does; no example at
/// all is an error too.
pub fn qa_metrics(predictions: &[String], answers: &[Vec<String>]) -> Result<Metrics> {
    check_lengths("qa", predictions.len(), answers.len())?;
    let scores = squad(predictions, answers)?;
    Ok(Metrics::new()
        .with("exact_match", scores.exact_match)
        .with("f1", scores.f1))
}

/// `accuracy` over labelled positions and `perplexity` of the mean loss, as `run_mlm` reports.
///
/// Errors when the lengths differ or no position is labelled.
pub fn mlm_metrics(predictions: &[u32], labels: &[i64], mean_loss: f64) -> Result<Metrics> {
    check_lengths("mlm", predictions.len(), labels.len())?;
    if labels.iter().all(|&l| l == IGNORE_INDEX) {
        return Err(Error::invalid(
            "mlm metrics: every label is -100 (no masked position to score)",
        ));
    }
    Ok(Metrics::new()
        .with("accuracy", masked_accuracy(predictions, labels))
        .with("perplexity", perplexity(mean_loss)))
}

impl EntityScores {
    /// `precision`, `recall`, `f1`, `accuracy`; with `entity_level`, also `{TYPE}_precision`,
    /// `{TYPE}_recall`, `{TYPE}_f1` and `{TYPE}_number` per type, the keys `run_ner` writes
    /// with `--return_entity_level_metrics`.
    pub fn to_metrics(&self, entity_level: bool) -> Metrics {
        let mut m = Metrics::new()
            .with("precision", self.precision)
            .with("recall", self.recall)
            .with("f1", self.f1)
            .with("accuracy", self.accuracy);
        if entity_level {
            for (name, t) in &self.per_type {
                m.insert(format!("{name}_precision"), t.precision);
                m.insert(format!("{name}_recall"), t.recall);
                m.insert(format!("{name}_f1"), t.f1);
                m.insert(format!("{name}_number"), t.support as f64);
            }
        }
        m
    }
}

fn check_lengths(task: &str, predictions: usize, gold: usize) -> Result<()> {
    if predictions != gold {
        return Err(Error::invalid(format!(
            "{task} metrics: {predictions} predictions but {gold} references"
        )));
    }
    if gold == 0 {
        return Err(Error::invalid(format!(
            "{task} metrics: no example to evaluate"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classification_and_regression() {
        let m = classification_metrics(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2]).unwrap();
        // accuracy 4/6 (positions 0, 2, 3, 4); macro_f1 as in classification.rs
        assert!((m.get("accuracy").unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.get("macro_f1").unwrap() - 0.655_555_555_555_555_6).abs() < 1e-12);
        assert!(classification_metrics(&[], &[]).is_err());
        assert!(classification_metrics(&[1], &[1, 2]).is_err());

        let m = regression_metrics(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]).unwrap();
        // pearson 0.6 (correlation.rs); ranks equal the values, so spearman 0.6 too
        assert!((m.get("pearson").unwrap() - 0.6).abs() < 1e-12);
        assert!((m.get("spearmanr").unwrap() - 0.6).abs() < 1e-12);
        let m = regression_metrics(&[1.0, 1.0], &[1.0, 2.0]).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"pearson":null,"spearmanr":null}"#
        );
        assert!(regression_metrics(&[], &[]).is_err());
    }

    #[test]
    fn ner_qa_mlm() {
        let gold = vec![strings(&["B-PER", "I-PER", "O"]), strings(&["B-LOC"])];
        let pred = vec![strings(&["B-PER", "I-PER", "O"]), strings(&["B-ORG"])];
        let m = ner_metrics(&gold, &pred).unwrap();
        // entities: gold PER, LOC; pred PER, ORG; correct 1 -> P = R = F1 = 0.5; tokens 3/4
        let names: Vec<&str> = m.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["precision", "recall", "f1", "accuracy"]);
        assert_eq!(m.get("f1"), Some(0.5));
        assert_eq!(m.get("accuracy"), Some(0.75));
        let full = seqeval(&gold, &pred).unwrap().to_metrics(true);
        assert_eq!(full.get("LOC_number"), Some(1.0));
        assert_eq!(full.get("ORG_precision"), Some(0.0));
        assert_eq!(full.get("PER_f1"), Some(1.0));
        assert!(ner_metrics(&[], &[]).is_err());

        let m = qa_metrics(&strings(&["the cat"]), &[strings(&["Cat", "dog"])]).unwrap();
        assert_eq!(m.get("exact_match"), Some(100.0));
        assert_eq!(m.get("f1"), Some(100.0));
        assert!(qa_metrics(&[], &[]).is_err());

        let m = mlm_metrics(&[4, 2], &[-100, 2], 0.0).unwrap();
        assert_eq!(m.get("accuracy"), Some(1.0));
        assert_eq!(m.get("perplexity"), Some(1.0));
        assert!(mlm_metrics(&[4, 2], &[-100, -100], 0.0).is_err());
        assert!(mlm_metrics(&[4], &[-100, 2], 0.0).is_err());
    }
}
