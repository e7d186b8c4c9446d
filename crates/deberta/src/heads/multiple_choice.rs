//! `DebertaV2ForMultipleChoice`: `[B, C, L]` inputs flattened to `[B*C, L]`, one pooled logit
//! per choice.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L1232>

use candle_core::Tensor;

use crate::config::DebertaV2Config;
use crate::heads::pooler::PooledClassifier;
use crate::heads::sequences::per_sequence_rows;
use crate::heads::TaskOutput;
use crate::loss::{cross_entropy, label_ids, IGNORE_INDEX};
use crate::model::{DebertaV2Model, ForwardOptions, ModelInput, Sequence};
use crate::weights::Weights;
use crate::{Error, Result};

pub struct DebertaV2ForMultipleChoice {
    deberta: DebertaV2Model,
    head: PooledClassifier,
}

impl DebertaV2ForMultipleChoice {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        Ok(Self {
            deberta: DebertaV2Model::load(&w.backbone(), cfg)?,
            head: PooledClassifier::load(w, cfg, 1)?,
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

    /// `input` holds `[B, C, L]` tensors; returns `logits [B, C]`; `labels [B]` adds cross-entropy.
    pub fn forward(
        &self,
        input: &ModelInput,
        labels: Option<&Tensor>,
        opts: ForwardOptions,
    ) -> Result<TaskOutput> {
        let (b, c, l) = input.input_ids.dims3().map_err(|_| {
            Error::input(format!(
                "multiple choice needs input_ids [batch, choices, len], got {:?}",
                input.input_ids.dims()
            ))
        })?;
        let flat = flatten_choices(input, (b, c, l))?;
        let out = self.deberta.forward(&flat, opts)?;
        let logits = self
            .head
            .forward(&out.last_hidden_state, self.deberta.mode())?
            .reshape((b, c))?;
        let loss = match labels {
            Some(labels) if labels.dims() == [b] => Some(cross_entropy(
                &logits,
                &label_ids(labels)?,
                IGNORE_INDEX,
                "labels",
            )?),
            Some(labels) => {
                return Err(Error::input(format!(
                    "labels must be [{b}], got {:?}",
                    labels.dims()
                )))
            }
            None => None,
        };
        Ok(TaskOutput::logits(logits, loss, out))
    }
}

impl DebertaV2ForMultipleChoice {
    /// An unpadded batch ([`DebertaV2Model::forward_packed`]), each sequence one choice:
    /// its score `logits [1, 1]` from its first token (group them into questions yourself).
    pub fn forward_sequences(&self, sequences: &[Sequence]) -> Result<Vec<TaskOutput>> {
        let out = self.deberta.forward_packed(sequences)?;
        let logits = self
            .head
            .forward(&out.first_tokens()?, self.deberta.mode())?; // [N, 1]
        per_sequence_rows(&logits)
    }
}

/// `[B, C, L]` -> `[B*C, L]` for every input tensor (`view(-1, size(-1))` in transformers).
fn flatten_choices(input: &ModelInput, (b, c, l): (usize, usize, usize)) -> Result<ModelInput> {
    let flat = |t: &Tensor, name: &str| -> Result<Tensor> {
        if t.dims() != [b, c, l] {
            return Err(Error::input(format!(
                "{name} must be [{b}, {c}, {l}] like input_ids, got {:?}",
                t.dims()
            )));
        }
        Ok(t.reshape((b * c, l))?)
    };
    Ok(ModelInput {
        input_ids: flat(&input.input_ids, "input_ids")?,
        attention_mask: input
            .attention_mask
            .as_ref()
            .map(|t| flat(t, "attention_mask"))
            .transpose()?,
        token_type_ids: input
            .token_type_ids
            .as_ref()
            .map(|t| flat(t, "token_type_ids"))
            .transpose()?,
        position_ids: input
            .position_ids
            .as_ref()
            .map(|t| flat(t, "position_ids"))
            .transpose()?,
    })
}
