//! Unpadded batches through the heads: [`TaskModel::forward_sequences`] runs a list of
//! sequences of different lengths (see [`crate::model::unpadded`]) and returns one
//! [`TaskOutput`] per sequence, each with batch size 1 and the sequence's own length.

use candle_core::Tensor;

use crate::heads::{AnyHead, TaskModel, TaskOutput};
use crate::model::Sequence;
use crate::Result;

impl TaskOutput {
    /// An output with `logits` only.
    pub(crate) fn of_logits(logits: Tensor) -> Self {
        Self {
            logits: Some(logits),
            ..Default::default()
        }
    }
}

/// `logits [N, C]` -> one output per sequence with `logits [1, C]`.
pub(crate) fn per_sequence_rows(logits: &Tensor) -> Result<Vec<TaskOutput>> {
    let n = logits.dim(0)?;
    (0..n)
        .map(|i| Ok(TaskOutput::of_logits(logits.narrow(0, i, 1)?)))
        .collect()
}

impl TaskModel {
    /// Runs the model on sequences of different lengths, without padding on the fused CPU
    /// path (padded internally elsewhere): one output per sequence, in order, shaped as
    /// [`TaskModel::forward`]'s with batch size 1 and the sequence's length: `logits [1, C]`
    /// (sequence classification; multiple choice: one choice per sequence, `[1, 1]`),
    /// `[1, len, C]` (token classification, masked LM), `start_logits`/`end_logits`
    /// `[1, len]` (question answering), `last_hidden_state [1, len, hidden]` (base model).
    /// Inference outputs: no labels, hidden states or attentions.
    pub fn forward_sequences(&self, sequences: &[Sequence]) -> Result<Vec<TaskOutput>> {
        match &self.head {
            AnyHead::Base(m) => Ok(m
                .forward_sequences(sequences)?
                .into_iter()
                .map(|h| TaskOutput {
                    last_hidden_state: Some(h),
                    ..Default::default()
                })
                .collect()),
            AnyHead::MaskedLm(m) => m.forward_sequences(sequences),
            AnyHead::SequenceClassification(m) => m.forward_sequences(sequences),
            AnyHead::TokenClassification(m) => m.forward_sequences(sequences),
            AnyHead::QuestionAnswering(m) => m.forward_sequences(sequences),
            AnyHead::MultipleChoice(m) => m.forward_sequences(sequences),
        }
    }

    /// Whether [`Self::forward_sequences`] runs without padding (the fused CPU path, in
    /// inference).
    pub fn runs_unpadded(&self) -> bool {
        self.backbone().runs_unpadded()
    }
}
