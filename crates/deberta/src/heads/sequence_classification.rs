//! `DebertaV2ForSequenceClassification` and its loss rules.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L993>

use candle_core::Tensor;

use crate::config::{DebertaV2Config, ProblemType};
use crate::heads::pooler::PooledClassifier;
use crate::heads::sequences::per_sequence_rows;
use crate::heads::TaskOutput;
use crate::loss::{
    bce_with_logits, cross_entropy, label_ids, mse, soft_cross_entropy, IGNORE_INDEX,
};
use crate::model::{DebertaV2Model, ForwardOptions, ModelInput, Sequence};
use crate::Result;

pub struct DebertaV2ForSequenceClassification {
    deberta: DebertaV2Model,
    head: PooledClassifier,
    num_labels: usize,
    problem_type: Option<ProblemType>,
}

impl DebertaV2ForSequenceClassification {
    pub fn load(w: &crate::weights::Weights, cfg: &DebertaV2Config) -> Result<Self> {
        Ok(Self {
            deberta: DebertaV2Model::load(&w.backbone(), cfg)?,
            head: PooledClassifier::load(w, cfg, cfg.num_labels())?,
            num_labels: cfg.num_labels(),
            problem_type: cfg.problem_type,
        })
    }

    /// The backbone.
    pub fn deberta(&self) -> &DebertaV2Model {
        &self.deberta
    }

    /// The backbone, mutably (e.g. for [`DebertaV2Model::quantize_int8`]).
    pub fn deberta_mut(&mut self) -> &mut DebertaV2Model {
        &mut self.deberta
    }

    /// `logits [B, num_labels]`; labels add the loss chosen by `problem_type` and `num_labels`.
    pub fn forward(
        &self,
        input: &ModelInput,
        labels: Option<&Tensor>,
        opts: ForwardOptions,
    ) -> Result<TaskOutput> {
        let out = self.deberta.forward(input, opts)?;
        let mut logits = self
            .head
            .forward(&out.last_hidden_state, self.deberta.mode())?;
        let loss = labels.map(|l| self.loss(&logits, l)).transpose()?;
        if labels.is_some() && self.problem_type.is_none() && self.num_labels == 1 {
            // transformers returns the flattened logits of its MSE path (`logits.view(-1)`).
            logits = logits.flatten_all()?;
        }
        Ok(TaskOutput::logits(logits, loss, out))
    }

    /// An unpadded batch ([`DebertaV2Model::forward_packed`]): `logits [1, num_labels]` per
    /// sequence, from its first token.
    pub fn forward_sequences(&self, sequences: &[Sequence]) -> Result<Vec<TaskOutput>> {
        let out = self.deberta.forward_packed(sequences)?;
        let logits = self
            .head
            .forward(&out.first_tokens()?, self.deberta.mode())?; // [N, C]
        per_sequence_rows(&logits)
    }

    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        match self.problem_type {
            None if self.num_labels == 1 => mse(&logits.flatten_all()?, &labels.flatten_all()?),
            None if labels.rank() == 1 || labels.dims().last() == Some(&1) => {
                // Rows with any negative label are dropped; with none left the loss is 0.
                let ids: Vec<i64> = label_ids(labels)?
                    .into_iter()
                    .map(|l| if l < 0 { IGNORE_INDEX } else { l })
                    .collect();
                if ids.iter().all(|&l| l == IGNORE_INDEX) {
                    return Ok(Tensor::new(0f32, logits.device())?);
                }
                cross_entropy(logits, &ids, IGNORE_INDEX, "labels")
            }
            None => soft_cross_entropy(logits, labels),
            Some(ProblemType::Regression) if self.num_labels == 1 => {
                mse(&logits.flatten_all()?, &labels.flatten_all()?)
            }
            Some(ProblemType::Regression) => mse(logits, labels),
            Some(ProblemType::SingleLabelClassification) => {
                cross_entropy(logits, &label_ids(labels)?, IGNORE_INDEX, "labels")
            }
            Some(ProblemType::MultiLabelClassification) => bce_with_logits(logits, labels),
        }
    }
}
