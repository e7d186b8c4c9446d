//! `DebertaV2ForTokenClassification`: a linear classifier on every token.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L1097>

use candle_core::Tensor;

use crate::config::DebertaV2Config;
use crate::heads::{per_token_loss, TaskOutput};
use crate::model::{DebertaV2Model, ForwardOptions, ModelInput, Sequence};
use crate::nn::{linear_or_init, Linear};
use crate::weights::Weights;
use crate::Result;

pub struct DebertaV2ForTokenClassification {
    deberta: DebertaV2Model,
    classifier: Linear,
    /// `hidden_dropout_prob`, before the classifier.
    dropout: f64,
}

impl DebertaV2ForTokenClassification {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        Ok(Self {
            deberta: DebertaV2Model::load(&w.backbone(), cfg)?,
            classifier: linear_or_init(
                &w.pp("classifier"),
                cfg.hidden_size,
                cfg.num_labels(),
                cfg.initializer_range,
            )?,
            dropout: cfg.hidden_dropout_prob,
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

    /// `logits [B, L, num_labels]`; `labels [B, L]` (-100 ignored) adds cross-entropy.
    pub fn forward(
        &self,
        input: &ModelInput,
        labels: Option<&Tensor>,
        opts: ForwardOptions,
    ) -> Result<TaskOutput> {
        let out = self.deberta.forward(input, opts)?;
        let mode = self.deberta.mode();
        let dropped = mode.dropout(&out.last_hidden_state, self.dropout)?;
        let logits = self.classifier.forward(&dropped, mode)?;
        let loss = labels
            .map(|labels| per_token_loss(&logits, labels, input))
            .transpose()?;
        Ok(TaskOutput::logits(logits, loss, out))
    }

    /// An unpadded batch ([`DebertaV2Model::forward_packed`]): `logits [1, len, num_labels]`
    /// per sequence, the classifier run over all tokens at once.
    pub fn forward_sequences(&self, sequences: &[Sequence]) -> Result<Vec<TaskOutput>> {
        let out = self.deberta.forward_packed(sequences)?;
        let mode = self.deberta.mode();
        let dropped = mode.dropout(&out.hidden, self.dropout)?;
        let logits = self.classifier.forward(&dropped, mode)?; // [T, C]
        Ok(out
            .split(&logits)?
            .into_iter()
            .map(TaskOutput::of_logits)
            .collect())
    }
}
