//! `DebertaV2ForMaskedLM` with both head layouts.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L796>
//!
//! | layout | tensors | logits |
//! |---|---|---|
//! | legacy (`legacy: true`) | `cls.predictions.transform.{dense,LayerNorm}`, `cls.predictions.bias` | `LN_E(act(dense_{H→E} h)) · W_wordᵀ + bias` |
//! | `lm_predictions` (Microsoft's checkpoints) | `lm_predictions.lm_head.{dense,LayerNorm,bias}` | `LN_H(act(dense_{H→H} h)) · W_wordᵀ + bias` |
//!
//! transformers picks the layout from `legacy` alone, so with the default `legacy: true` it drops
//! the `lm_predictions.*` weights of Microsoft's checkpoints and predicts noise
//! (transformers#15216). We load whichever layout the checkpoint carries.

use candle_core::Tensor;

use crate::activation::Activation;
use crate::config::DebertaV2Config;
use crate::heads::{per_token_loss, TaskOutput};
use crate::model::{DebertaV2Model, ForwardOptions, ModelInput, Sequence};
use crate::nn::{layer_norm_or_init, linear_or_init, LayerNorm, Linear};
use crate::params::Param;
use crate::weights::{Init, Weights};
use crate::{Error, Result};

/// Which masked-LM head layout a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlmLayout {
    /// `cls.predictions.*` (BERT-style, `legacy: true`).
    Legacy,
    /// `lm_predictions.lm_head.*` (Microsoft's checkpoints, `legacy: false`).
    LmPredictions,
}

pub struct DebertaV2ForMaskedLM {
    deberta: DebertaV2Model,
    layout: MlmLayout,
    dense: Linear,
    act: Activation,
    layer_norm: LayerNorm,
    /// `[vocab, E]`: the word embeddings when tied, else `cls.predictions.decoder.weight`.
    decoder: Param,
    bias: Param,
}

/// Tensors transformers ignores when loading this head: the RTD discriminator of v3 checkpoints,
/// the tied decoder copies and absolute positions of models without them.
pub fn ignored(name: &str) -> bool {
    crate::pretrained::ignored_by_all(name)
        || name.starts_with("mask_predictions.")
        || name == "cls.predictions.decoder.bias"
}

fn choose_layout(w: &Weights, cfg: &DebertaV2Config) -> MlmLayout {
    let has_lm = w.contains("lm_predictions.lm_head.dense.weight");
    let has_cls = w.contains("cls.predictions.transform.dense.weight");
    match (has_lm, has_cls) {
        (true, _) => {
            if cfg.legacy {
                tracing::warn!(
                    "checkpoint has lm_predictions.* weights: using that masked-LM head although \
                     config says legacy=true (transformers would drop them, transformers#15216)"
                );
            }
            MlmLayout::LmPredictions
        }
        (false, true) => MlmLayout::Legacy,
        (false, false) if cfg.legacy => MlmLayout::Legacy,
        (false, false) => MlmLayout::LmPredictions,
    }
}

fn tie_word_embeddings(cfg: &DebertaV2Config) -> bool {
    cfg.extra
        .get("tie_word_embeddings")
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

impl DebertaV2ForMaskedLM {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let deberta = DebertaV2Model::load(&w.backbone(), cfg)?;
        let (h, e, v, std) = (
            cfg.hidden_size,
            cfg.embedding_size(),
            cfg.vocab_size,
            cfg.initializer_range,
        );
        let layout = choose_layout(w, cfg);
        let (head, width) = match layout {
            MlmLayout::Legacy => (w.pp("cls.predictions"), e),
            MlmLayout::LmPredictions => {
                if e != h {
                    return Err(Error::config(
                        "embedding_size",
                        format!("the lm_predictions head needs embedding_size == hidden_size ({e} != {h})"),
                    ));
                }
                (w.pp("lm_predictions.lm_head"), h)
            }
        };
        let transform = if layout == MlmLayout::Legacy {
            head.pp("transform")
        } else {
            head.clone()
        };
        let decoder = if layout == MlmLayout::Legacy && !tie_word_embeddings(cfg) {
            head.pp("decoder")
                .get_or_init(&[v, e], "weight", Init::Normal(std))?
        } else {
            head.pp("decoder").mark_used("weight");
            deberta.word_embeddings().clone()
        };
        Ok(Self {
            dense: linear_or_init(&transform.pp("dense"), h, width, std)?,
            act: cfg.hidden_act,
            layer_norm: layer_norm_or_init(&transform.pp("LayerNorm"), width, cfg.layer_norm_eps)?,
            bias: head.get_or_init(&[v], "bias", Init::Zeros)?,
            decoder,
            layout,
            deberta,
        })
    }

    /// The head layout in use.
    pub fn layout(&self) -> MlmLayout {
        self.layout
    }

    /// The backbone.
    pub fn deberta(&self) -> &DebertaV2Model {
        &self.deberta
    }

    /// The backbone, mutably (e.g. for [`DebertaV2Model::quantize_int8`]).
    pub fn deberta_mut(&mut self) -> &mut DebertaV2Model {
        &mut self.deberta
    }

    /// `logits [B, L, vocab]`; `labels [B, L]` (-100 ignored) adds the loss.
    pub fn forward(
        &self,
        input: &ModelInput,
        labels: Option<&Tensor>,
        opts: ForwardOptions,
    ) -> Result<TaskOutput> {
        let out = self.deberta.forward(input, opts)?;
        if let (true, Some(labels)) = (self.deberta.mode().is_train(), labels) {
            return self.training_loss(input, labels, out);
        }
        let logits = self.logits(&out.last_hidden_state)?;
        let loss = labels
            .map(|labels| per_token_loss(&logits, labels, input))
            .transpose()?;
        Ok(TaskOutput::logits(logits, loss, out))
    }

    /// An unpadded batch ([`DebertaV2Model::forward_packed`]): `logits [1, len, vocab]` per
    /// sequence, the prediction head run over all tokens at once.
    pub fn forward_sequences(&self, sequences: &[Sequence]) -> Result<Vec<TaskOutput>> {
        let out = self.deberta.forward_packed(sequences)?;
        let logits = self.logits(&out.hidden)?; // [T, vocab]
        Ok(out
            .split(&logits)?
            .into_iter()
            .map(TaskOutput::of_logits)
            .collect())
    }

    /// The prediction head: `hidden [..., H]` -> `[..., vocab]`.
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let mode = self.deberta.mode();
        let train = mode.is_train();
        let x = self.dense.forward(hidden, mode)?;
        let x = self.layer_norm.forward(&self.act.forward(&x)?, mode)?;
        Ok(x.broadcast_matmul(&self.decoder.get(train).t()?)?
            .broadcast_add(self.bias.get(train))?)
    }

    /// Training: the loss from the head run on the labelled positions only (the same loss and
    /// gradients as on every position, without the `[B, L, vocab]` logits the loss ignores);
    /// no logits are returned.
    fn training_loss(
        &self,
        input: &ModelInput,
        labels: &Tensor,
        out: crate::model::BaseModelOutput,
    ) -> Result<TaskOutput> {
        let (b, l) = super::model_input_dims(input)?;
        if labels.dims() != [b, l] {
            return Err(Error::input(format!(
                "labels must be [{b}, {l}], got {:?}",
                labels.dims()
            )));
        }
        let ids = crate::loss::label_ids(labels)?;
        let (rows, targets): (Vec<u32>, Vec<i64>) = ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| id != crate::loss::IGNORE_INDEX)
            .map(|(i, &id)| (i as u32, id))
            .unzip();
        let hidden = out.last_hidden_state.flatten_to(1)?; // [B, L, H] -> [B*L, H]
        let loss = if rows.is_empty() {
            Tensor::new(f32::NAN, hidden.device())?
        } else {
            let n = rows.len();
            let picked = hidden.index_select(&Tensor::from_vec(rows, n, hidden.device())?, 0)?;
            let logits = self.logits(&picked)?; // [n, vocab]
            crate::loss::cross_entropy(&logits, &targets, crate::loss::IGNORE_INDEX, "labels")?
        };
        Ok(TaskOutput {
            loss: Some(loss),
            hidden_states: out.hidden_states,
            attentions: out.attentions,
            ..Default::default()
        })
    }
}
