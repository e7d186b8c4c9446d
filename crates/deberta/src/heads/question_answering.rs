//! `DebertaV2ForQuestionAnswering`: start and end logits per token.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L1156>

use candle_core::{IndexOp, Tensor};

use crate::config::DebertaV2Config;
use crate::heads::{model_input_dims, TaskOutput};
use crate::loss::{cross_entropy, label_ids};
use crate::model::{DebertaV2Model, ForwardOptions, ModelInput, Sequence};
use crate::nn::{linear_or_init, Linear};
use crate::weights::Weights;
use crate::{Error, Result};

pub struct DebertaV2ForQuestionAnswering {
    deberta: DebertaV2Model,
    qa_outputs: Linear,
}

impl DebertaV2ForQuestionAnswering {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        if cfg.num_labels() != 2 {
            return Err(Error::config(
                "num_labels",
                format!("question answering splits the output into start and end, so it needs 2, not {}", cfg.num_labels()),
            ));
        }
        Ok(Self {
            deberta: DebertaV2Model::load(&w.backbone(), cfg)?,
            qa_outputs: linear_or_init(
                &w.pp("qa_outputs"),
                cfg.hidden_size,
                2,
                cfg.initializer_range,
            )?,
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

    /// `start_logits`, `end_logits` `[B, L]`; positions `[B]` (or `[B, 1]`) add the loss: clamped
    /// to `[0, L]`, position `L` ignored, mean of the start and end cross-entropies.
    pub fn forward(
        &self,
        input: &ModelInput,
        positions: Option<(&Tensor, &Tensor)>,
        opts: ForwardOptions,
    ) -> Result<TaskOutput> {
        let out = self.deberta.forward(input, opts)?;
        let logits = self
            .qa_outputs
            .forward(&out.last_hidden_state, self.deberta.mode())?; // [B, L, 2]
        let start = logits.i((.., .., 0))?.contiguous()?;
        let end = logits.i((.., .., 1))?.contiguous()?;
        let loss = match positions {
            Some((s, e)) => {
                let (b, l) = model_input_dims(input)?;
                let s = span_loss(&start, s, "start_positions", b, l)?;
                let e = span_loss(&end, e, "end_positions", b, l)?;
                Some(((s + e)? / 2.0)?)
            }
            None => None,
        };
        Ok(TaskOutput {
            loss,
            logits: None,
            start_logits: Some(start),
            end_logits: Some(end),
            hidden_states: out.hidden_states,
            attentions: out.attentions,
            last_hidden_state: None,
        })
    }
}

impl DebertaV2ForQuestionAnswering {
    /// An unpadded batch ([`DebertaV2Model::forward_packed`]): `start_logits`, `end_logits`
    /// `[1, len]` per sequence.
    pub fn forward_sequences(&self, sequences: &[Sequence]) -> Result<Vec<TaskOutput>> {
        let out = self.deberta.forward_packed(sequences)?;
        let logits = self.qa_outputs.forward(&out.hidden, self.deberta.mode())?; // [T, 2]
        let start = out.split(&logits.i((.., 0))?.contiguous()?)?;
        let end = out.split(&logits.i((.., 1))?.contiguous()?)?;
        Ok(start
            .into_iter()
            .zip(end)
            .map(|(s, e)| TaskOutput {
                start_logits: Some(s),
                end_logits: Some(e),
                ..Default::default()
            })
            .collect())
    }
}

fn span_loss(
    logits: &Tensor,
    positions: &Tensor,
    name: &str,
    b: usize,
    l: usize,
) -> Result<Tensor> {
    let ok_shape = positions.dims() == [b] || positions.dims() == [b, 1];
    if !ok_shape {
        return Err(Error::input(format!(
            "{name} must be [{b}] or [{b}, 1], got {:?}",
            positions.dims()
        )));
    }
    let clamped: Vec<i64> = label_ids(positions)?
        .into_iter()
        .map(|p| p.clamp(0, l as i64))
        .collect();
    cross_entropy(logits, &clamped, l as i64, name)
}
