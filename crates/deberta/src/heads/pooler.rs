//! `ContextPooler` and the classifier on top of it, shared by sequence classification and
//! multiple choice.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L965>

use candle_core::{IndexOp, Tensor};

use crate::activation::Activation;
use crate::config::DebertaV2Config;
use crate::dropout::RunMode;
use crate::nn::{linear_or_init, Linear};
use crate::weights::Weights;
use crate::{Error, Result};

/// `[CLS]` hidden state -> dropout(`pooler_dropout`) -> `dense` -> `pooler_hidden_act`.
pub struct ContextPooler {
    dense: Linear,
    act: Activation,
    dropout: f64,
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
            dropout: cfg.pooler_dropout,
        })
    }

    /// `[B, L, H]` -> `[B, H]`
    pub fn forward(&self, hidden: &Tensor, mode: &RunMode) -> Result<Tensor> {
        let first = mode.dropout(&hidden.i((.., 0))?.contiguous()?, self.dropout)?;
        self.act.forward(&self.dense.forward(&first, mode)?)
    }
}

/// The pooler, dropout (`cls_dropout`, else `hidden_dropout_prob`) and the `classifier` linear
/// layer.
pub struct PooledClassifier {
    pooler: ContextPooler,
    classifier: Linear,
    dropout: f64,
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
            dropout: cfg.cls_dropout.unwrap_or(cfg.hidden_dropout_prob),
        })
    }

    /// `[B, L, H]` -> `[B, outputs]`
    pub fn forward(&self, hidden: &Tensor, mode: &RunMode) -> Result<Tensor> {
        let pooled = mode.dropout(&self.pooler.forward(hidden, mode)?, self.dropout)?;
        self.classifier.forward(&pooled, mode)
    }
}
