//! Batches: features right-padded to the longest sequence, with their labels, and their
//! tensors.

use candle_core::{Device, Tensor};
use deberta::{Labels, ModelInput};

use super::encode::IGNORE;
use super::labels::Target;
use super::mask::{mask_sequence, MaskingSeed};
use super::{Dataset, Task};
use crate::{Error, Result};

/// A padded batch, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub input_ids: Vec<u32>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// As the tokenizer produces them (0 / 1 for the two texts of a pair; 0 for padding).
    pub token_type_ids: Option<Vec<u32>>,
    /// `[B, L]`, or `[B, C, L]` for multiple choice.
    pub dims: Vec<usize>,
    pub labels: BatchLabels,
    /// Examples (features) in the batch.
    pub size: usize,
}

/// The labels of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchLabels {
    /// `[B]` class ids: sequence classification and multiple choice.
    Classes(Vec<i64>),
    /// `[B, width]` targets.
    Regression { values: Vec<f32>, width: usize },
    /// `[B, width]` 0/1 (or soft) targets.
    MultiLabel { values: Vec<f32>, width: usize },
    /// `[B * L]`, -100 ignored: token classification and masked LM.
    Tokens(Vec<i64>),
    /// `[B]` answer start and end tokens.
    Spans { start: Vec<i64>, end: Vec<i64> },
}

/// The label tensors of a batch, on a device.
#[derive(Debug, Clone, Default)]
pub struct LabelTensors {
    /// `[B]` i64 classes, `[B, width]` f32 targets, or `[B, L]` i64 token labels.
    pub labels: Option<Tensor>,
    /// `[B]` i64.
    pub start_positions: Option<Tensor>,
    /// `[B]` i64.
    pub end_positions: Option<Tensor>,
}

impl LabelTensors {
    /// The labels as the model's forward pass takes them.
    pub fn as_labels(&self) -> Labels<'_> {
        Labels {
            labels: self.labels.as_ref(),
            start_positions: self.start_positions.as_ref(),
            end_positions: self.end_positions.as_ref(),
        }
    }
}

impl Batch {
    /// `(B, L)`: rows (times choices) and padded length.
    fn rows_and_len(&self) -> (usize, usize) {
        let l = self.dims.last().copied().unwrap_or(0);
        (self.input_ids.len() / l.max(1), l)
    }

    /// The model input (u32 ids, mask and token types) and the labels (i64 class ids,
    /// positions and token labels, f32 targets) on `device`.
    pub fn to_tensors(&self, device: &Device) -> Result<(ModelInput, LabelTensors)> {
        let dims = self.dims.as_slice();
        let mut input = ModelInput::from_ids(Tensor::from_slice(&self.input_ids, dims, device)?)
            .with_attention_mask(Tensor::from_slice(&self.attention_mask, dims, device)?);
        if let Some(t) = &self.token_type_ids {
            input = input.with_token_type_ids(Tensor::from_slice(t, dims, device)?);
        }
        let b = self.size;
        let none = LabelTensors {
            labels: None,
            start_positions: None,
            end_positions: None,
        };
        let labels = match &self.labels {
            BatchLabels::Classes(c) => LabelTensors {
                labels: Some(Tensor::from_slice(c, b, device)?),
                ..none
            },
            BatchLabels::Regression { values, width }
            | BatchLabels::MultiLabel { values, width } => LabelTensors {
                labels: Some(Tensor::from_slice(values, (b, *width), device)?),
                ..none
            },
            BatchLabels::Tokens(t) => {
                let (rows, l) = self.rows_and_len();
                LabelTensors {
                    labels: Some(Tensor::from_slice(t, (rows, l), device)?),
                    ..none
                }
            }
            BatchLabels::Spans { start, end } => LabelTensors {
                labels: None,
                start_positions: Some(Tensor::from_slice(start, b, device)?),
                end_positions: Some(Tensor::from_slice(end, b, device)?),
            },
        };
        Ok((input, labels))
    }
}

impl Dataset {
    /// The features at `indices`, right-padded to the longest sequence with the pad id.
    /// Masked LM masks here and needs `masking` (see [`MaskingSeed`]; the mask depends on the
    /// seed, the step, the feature index and the position, not on the batch's order); other
    /// tasks ignore it.
    pub fn batch(&self, indices: &[usize], masking: Option<MaskingSeed>) -> Result<Batch> {
        if indices.is_empty() {
            return Err(Error::invalid("a batch needs at least one example"));
        }
        let features = indices
            .iter()
            .map(|&i| {
                self.features.get(i).ok_or_else(|| {
                    Error::invalid(format!(
                        "batch index {i} is out of range (the dataset has {} features)",
                        self.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let choices = features.first().map_or(1, |f| f.sequences.len());
        if features.iter().any(|f| f.sequences.len() != choices) {
            return Err(Error::invalid(
                "the examples of a multiple-choice batch have different numbers of choices",
            ));
        }
        let l = features
            .iter()
            .flat_map(|f| f.sequences.iter().map(|s| s.input_ids.len()))
            .max()
            .unwrap_or(0);
        let rows = features.len() * choices;
        let mut batch = Batch {
            input_ids: Vec::with_capacity(rows * l),
            attention_mask: Vec::with_capacity(rows * l),
            token_type_ids: Some(Vec::with_capacity(rows * l)),
            dims: if self.task == Task::MultipleChoice {
                vec![features.len(), choices, l]
            } else {
                vec![features.len(), l]
            },
            labels: BatchLabels::Classes(Vec::new()),
            size: features.len(),
        };
        let mut tokens: Vec<i64> = Vec::new();
        let mlm = match (self.task, self.mlm, masking) {
            (Task::MaskedLm, Some(s), Some(m)) => Some((s, m)),
            (Task::MaskedLm, _, _) => {
                return Err(Error::invalid(
                    "masked-LM batches need a MaskingSeed (the masking is done per batch)",
                ))
            }
            _ => None,
        };
        for (&fi, f) in indices.iter().zip(&features) {
            for seq in &f.sequences {
                let pad = l - seq.input_ids.len();
                let ids = match mlm {
                    Some((settings, m)) => {
                        let (ids, labels) = mask_sequence(seq, &settings, m, fi);
                        tokens.extend(labels);
                        tokens.extend(std::iter::repeat_n(IGNORE, pad));
                        ids
                    }
                    None => seq.input_ids.clone(),
                };
                batch.input_ids.extend(ids);
                batch
                    .input_ids
                    .extend(std::iter::repeat_n(self.pad_id, pad));
                batch
                    .attention_mask
                    .extend(std::iter::repeat_n(1, seq.input_ids.len()));
                batch.attention_mask.extend(std::iter::repeat_n(0, pad));
                if let Some(t) = batch.token_type_ids.as_mut() {
                    t.extend(&seq.token_type_ids);
                    t.extend(std::iter::repeat_n(0, pad));
                }
            }
        }
        batch.labels = if mlm.is_some() {
            BatchLabels::Tokens(tokens)
        } else {
            self.labels_of(&features, l)?
        };
        Ok(batch)
    }

    fn labels_of(&self, features: &[&super::Feature], l: usize) -> Result<BatchLabels> {
        let width = self.labels.as_ref().map_or(1, |s| s.len());
        let mismatch = |what: &str| {
            Error::invalid(format!(
                "a feature's target is not {what} like the others of the batch"
            ))
        };
        Ok(match features.first().map(|f| &f.target) {
            Some(Target::Class(_)) => BatchLabels::Classes(
                features
                    .iter()
                    .map(|f| match f.target {
                        Target::Class(c) => Ok(c),
                        _ => Err(mismatch("a class")),
                    })
                    .collect::<Result<_>>()?,
            ),
            Some(Target::Regression(_)) | Some(Target::MultiLabel(_)) => {
                let regression = matches!(
                    features.first().map(|f| &f.target),
                    Some(Target::Regression(_))
                );
                let mut values = Vec::with_capacity(features.len() * width);
                for f in features {
                    match &f.target {
                        Target::Regression(v) if regression && v.len() == width => values.extend(v),
                        Target::MultiLabel(v) if !regression && v.len() == width => {
                            values.extend(v)
                        }
                        _ => return Err(mismatch(&format!("{width} values"))),
                    }
                }
                if regression {
                    BatchLabels::Regression { values, width }
                } else {
                    BatchLabels::MultiLabel { values, width }
                }
            }
            Some(Target::Tokens(_)) => {
                let mut values = Vec::with_capacity(features.len() * l);
                for f in features {
                    let Target::Tokens(t) = &f.target else {
                        return Err(mismatch("token labels"));
                    };
                    values.extend(t);
                    values.extend(std::iter::repeat_n(IGNORE, l.saturating_sub(t.len())));
                }
                BatchLabels::Tokens(values)
            }
            Some(Target::Span { .. }) => {
                let (mut start, mut end) = (Vec::new(), Vec::new());
                for f in features {
                    let Target::Span { start: s, end: e } = f.target else {
                        return Err(mismatch("an answer span"));
                    };
                    start.push(s);
                    end.push(e);
                }
                BatchLabels::Spans { start, end }
            }
            Some(Target::None) | None => {
                return Err(Error::invalid("the features have no labels to batch"))
            }
        })
    }
}
