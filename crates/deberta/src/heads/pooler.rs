//! `ContextPooler` and the classifier on top of it, shared by sequence classification and
//! multiple choice.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L965>

use candle_core::{IndexOp, Tensor};
use candle_nn::Linear;

use crate::activation::Activation;
use crate::config::DebertaV2Config;
use crate::nn::{apply, linear_or_init};
use crate::weights::Weights;
use crate::{Error, Result};

/// `[CLS]` hidden state -> `dense` -> `pooler_hidden_act` (dropout is identity at inference).
pub struct ContextPooler {
    dense: Linear,
    act: Activation,
}

impl ContextPooler {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let p = cfg.pooler_hidden_size();
        if p != cfg.hidden_size {
            // transformers builds Linear(P, P) and applies it to an H-wide vector.
            return Err(Error::config(
                "pooler_hidden_size",
                format!(
                    "{p} must equal hidden_size {} for the pooled heads",
                    cfg.hidden_size
                ),
            ));
        }
        Ok(Self {
            dense: linear_or_init(&w.pp("dense"), p, p, cfg.initializer_range)?,
            act: cfg.pooler_hidden_act,
        })
    }

    /// `[B, L, H]` -> `[B, H]`
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let first = hidden.i((.., 0))?.contiguous()?;
        self.act.forward(&apply(&self.dense, &first)?)
    }
}

/// The pooler followed by the `classifier` linear layer (`cls_dropout` is identity at inference).
pub struct PooledClassifier {
    pooler: ContextPooler,
    classifier: Linear,
}

impl PooledClassifier {
    /// `w` is the checkpoint root (`pooler.*`, `classifier.*`).
    pub fn load(w: &Weights, cfg: &DebertaV2Config, outputs: usize) -> Result<Self> {
        Ok(Self {
            pooler: ContextPooler::load(&w.pp("pooler"), cfg)?,
            classifier: linear_or_init(
                &w.pp("classifier"),
                cfg.hidden_size,
                outputs,
                cfg.initializer_range,
            )?,
        })
    }

    /// `[B, L, H]` -> `[B, outputs]`
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        apply(&self.classifier, &self.pooler.forward(hidden)?)
    }
}
