//! Evaluation on a held-out JSON-lines file: the loss and the metrics transformers' example
//! scripts report for each task (accuracy and macro-F1, Pearson/Spearman, seqeval's entity
//! scores, SQuAD's exact match and F1 after the `run_qa` post-processing, multiple-choice
//! accuracy, masked-LM perplexity and masked-token accuracy).

use candle_core::{DType, Device, Tensor, D};
use deberta::{ForwardOptions, TaskModel};
use serde_json::{Map, Value};

use crate::data::{qa_predictions, BatchLabels, Dataset, MaskingSeed, ProblemType, Target, Task};
use crate::metrics::{
    accuracy, classification_metrics, mlm_metrics, ner_metrics, qa_metrics, regression_metrics,
    Metrics,
};
use crate::trainer::Evaluator;
use crate::{Error, Result};

/// Evaluates a dataset in file order, `batch_size` features at a time.
pub struct DatasetEvaluator {
    dataset: Dataset,
    batch_size: usize,
    /// Masked LM: the masks of evaluation (the same at every evaluation).
    seed: u64,
}

/// What the forward passes over the whole set produced, per feature.
#[derive(Default)]
struct Collected {
    loss_sum: f64,
    examples: usize,
    /// Sequence classification / multiple choice: the logits row of each feature.
    rows: Vec<Vec<f32>>,
    /// Token classification / masked LM: the argmax of each token.
    tokens: Vec<Vec<u32>>,
    /// Masked LM: the labels of each token (-100 ignored).
    token_labels: Vec<Vec<i64>>,
    /// Question answering.
    starts: Vec<Vec<f32>>,
    ends: Vec<Vec<f32>>,
}

impl DatasetEvaluator {
    pub fn new(dataset: Dataset, batch_size: usize, seed: u64) -> Result<Self> {
        if dataset.is_empty() {
            return Err(Error::invalid("the evaluation set has no example"));
        }
        Ok(Self {
            dataset,
            batch_size: batch_size.max(1),
            seed: seed ^ 0xE7A1_0000,
        })
    }

    fn collect(&self, model: &TaskModel, device: &Device) -> Result<Collected> {
        let mut out = Collected::default();
        let indices: Vec<usize> = (0..self.dataset.len()).collect();
        for (k, chunk) in indices.chunks(self.batch_size).enumerate() {
            let masking = self.dataset.mlm.map(|_| MaskingSeed {
                seed: self.seed,
                step: k as u64,
            });
            let batch = self.dataset.batch(chunk, masking)?;
            let (input, labels) = batch.to_tensors(device)?;
            let result = model.forward(&input, labels.as_labels(), ForwardOptions::default())?;
            if let Some(loss) = &result.loss {
                let loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()? as f64;
                out.loss_sum += loss * chunk.len() as f64;
                out.examples += chunk.len();
            }
            if let BatchLabels::Tokens(ids) = &batch.labels {
                let width = ids.len() / chunk.len().max(1);
                out.token_labels
                    .extend(ids.chunks(width.max(1)).map(<[i64]>::to_vec));
            }
            self.collect_outputs(&result, chunk.len(), &mut out)?;
        }
        Ok(out)
    }

    fn collect_outputs(
        &self,
        result: &deberta::TaskOutput,
        batch: usize,
        out: &mut Collected,
    ) -> Result<()> {
        match self.dataset.task {
            Task::SequenceClassification | Task::MultipleChoice => {
                out.rows.extend(rows_of(result.logits.as_ref(), batch)?);
            }
            Task::TokenClassification | Task::MaskedLm => {
                let logits = result.logits.as_ref().ok_or_else(no_logits)?;
                let argmax = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
                out.tokens.extend(argmax.to_vec2::<u32>()?);
            }
            Task::QuestionAnswering => {
                out.starts
                    .extend(rows_of(result.start_logits.as_ref(), batch)?);
                out.ends.extend(rows_of(result.end_logits.as_ref(), batch)?);
            }
        }
        Ok(())
    }

    fn metrics(&self, c: &Collected) -> Result<Metrics> {
        let ds = &self.dataset;
        let mean_loss = c.loss_sum / c.examples.max(1) as f64;
        let mut metrics = match ds.task {
            Task::SequenceClassification => self.sequence_metrics(c)?,
            Task::MultipleChoice => {
                let (pred, gold) = argmax_vs_classes(ds, &c.rows);
                Metrics::new().with("accuracy", accuracy(&pred, &gold))
            }
            Task::TokenClassification => self.ner(c)?,
            Task::QuestionAnswering => {
                let predictions = qa_predictions(ds, &c.starts, &c.ends);
                let answers: Vec<Vec<String>> = ds
                    .examples
                    .qa
                    .iter()
                    .map(|e| e.answers.iter().map(|a| a.text.clone()).collect())
                    .collect();
                qa_metrics(&predictions, &answers)?
            }
            Task::MaskedLm => {
                let pred: Vec<u32> = c.tokens.iter().flatten().copied().collect();
                let labels: Vec<i64> = c.token_labels.iter().flatten().copied().collect();
                mlm_metrics(&pred, &labels, mean_loss)?
            }
        };
        if c.examples > 0 {
            metrics.insert("loss", mean_loss);
        }
        Ok(metrics)
    }

    fn sequence_metrics(&self, c: &Collected) -> Result<Metrics> {
        let ds = &self.dataset;
        let problem = ds.labels.as_ref().map(|l| l.problem_type);
        match problem {
            Some(ProblemType::Regression) => {
                let mut pred = Vec::new();
                let mut gold = Vec::new();
                for (row, f) in c.rows.iter().zip(&ds.features) {
                    if let Target::Regression(values) = &f.target {
                        pred.extend(row.iter().map(|&v| v as f64));
                        gold.extend(values.iter().map(|&v| v as f64));
                    }
                }
                regression_metrics(&pred, &gold)
            }
            Some(ProblemType::MultiLabel) => Ok(multi_label_metrics(ds, &c.rows)),
            _ => {
                let (pred, gold) = argmax_vs_classes(ds, &c.rows);
                classification_metrics(&pred, &gold)
            }
        }
    }

    /// Word-level tags from each word's first sub-token, as `run_ner` aligns them; words cut
    /// off by truncation are predicted `O`.
    fn ner(&self, c: &Collected) -> Result<Metrics> {
        let ds = &self.dataset;
        let names = ds
            .labels
            .as_ref()
            .map(|l| l.names.clone())
            .unwrap_or_default();
        let mut gold = Vec::new();
        let mut predicted = Vec::new();
        for (f, tokens) in ds.features.iter().zip(&c.tokens) {
            let Some(example) = ds.examples.tokens.get(f.example) else {
                continue;
            };
            let mut tags = vec!["O".to_string(); example.tags.len()];
            for &(pos, word) in &f.word_starts {
                let id = tokens.get(pos).copied().unwrap_or(0) as usize;
                if let (Some(slot), Some(name)) = (tags.get_mut(word), names.get(id)) {
                    *slot = name.clone();
                }
            }
            gold.push(example.tags.clone());
            predicted.push(tags);
        }
        ner_metrics(&gold, &predicted)
    }
}

impl Evaluator for DatasetEvaluator {
    fn evaluate(&self, model: &TaskModel) -> Result<Map<String, Value>> {
        let collected = self.collect(model, model.device())?;
        let metrics = self.metrics(&collected)?;
        match serde_json::to_value(&metrics) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Error::invalid("metrics did not serialise to an object")),
        }
    }
}

fn no_logits() -> Error {
    Error::invalid("the model gave no logits to evaluate")
}

/// `[B, ...]` -> one host row per batch entry.
fn rows_of(t: Option<&Tensor>, batch: usize) -> Result<Vec<Vec<f32>>> {
    let t = t.ok_or_else(no_logits)?.to_dtype(DType::F32)?;
    let flat = t.flatten_all()?.to_vec1::<f32>()?;
    let width = flat.len() / batch.max(1);
    Ok(flat.chunks(width.max(1)).map(<[f32]>::to_vec).collect())
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Predicted and gold classes of the features that have a class target.
fn argmax_vs_classes(ds: &Dataset, rows: &[Vec<f32>]) -> (Vec<usize>, Vec<usize>) {
    rows.iter()
        .zip(&ds.features)
        .filter_map(|(row, f)| match f.target {
            Target::Class(c) if c >= 0 => Some((argmax(row), c as usize)),
            _ => None,
        })
        .unzip()
}

/// Multi-label: subset accuracy and the macro average of each label's binary F1 (a logit > 0
/// predicts the label; a target > 0.5 is gold).
fn multi_label_metrics(ds: &Dataset, rows: &[Vec<f32>]) -> Metrics {
    let mut exact = 0usize;
    let mut total = 0usize;
    let width = rows.first().map_or(0, Vec::len);
    let mut counts = vec![(0usize, 0usize, 0usize); width]; // (tp, predicted, gold)
    for (row, f) in rows.iter().zip(&ds.features) {
        let Target::MultiLabel(target) = &f.target else {
            continue;
        };
        total += 1;
        let mut all = true;
        for (j, (&logit, &t)) in row.iter().zip(target).enumerate() {
            let (p, g) = (logit > 0.0, t > 0.5);
            all &= p == g;
            if let Some(c) = counts.get_mut(j) {
                c.0 += usize::from(p && g);
                c.1 += usize::from(p);
                c.2 += usize::from(g);
            }
        }
        exact += usize::from(all);
    }
    let f1s: Vec<f64> = counts
        .iter()
        .filter(|c| c.1 + c.2 > 0)
        .map(|&(tp, p, g)| 2.0 * tp as f64 / (p + g) as f64)
        .collect();
    let macro_f1 = if f1s.is_empty() {
        f64::NAN
    } else {
        f1s.iter().sum::<f64>() / f1s.len() as f64
    };
    Metrics::new()
        .with("accuracy", exact as f64 / total.max(1) as f64)
        .with("macro_f1", macro_f1)
}
