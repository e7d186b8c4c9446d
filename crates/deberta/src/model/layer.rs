//! `DebertaV2Layer`: attention, then the feed-forward block (`DebertaV2Intermediate` and
//! `DebertaV2Output`), post-LayerNorm. This is the candle path; the fused CPU path reads the
//! same parameters through the encoder's fused weights (`model/fused.rs`).
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L378>

use candle_core::Tensor;

use crate::activation::Activation;
use crate::config::DebertaV2Config;
use crate::dropout::RunMode;
use crate::model::attention::{AttentionContext, DebertaV2Attention};
use crate::nn::{layer_norm, linear, LayerNorm, Linear};
use crate::weights::Weights;
use crate::Result;

pub struct DebertaV2Layer {
    attention: DebertaV2Attention,
    intermediate: Linear,
    act: Activation,
    output: Linear,
    output_norm: LayerNorm,
    /// `hidden_dropout_prob` (`DebertaV2Output.dropout`).
    dropout: f64,
}

/// A layer's parameters by role, for the fused path's preparations.
pub(crate) struct LayerParts<'a> {
    pub attention: &'a DebertaV2Attention,
    pub intermediate: &'a Linear,
    pub act: Activation,
    pub output: &'a Linear,
    pub output_norm: &'a LayerNorm,
}

impl DebertaV2Layer {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: DebertaV2Attention::load(&w.pp("attention"), cfg)?,
            intermediate: linear(&w.pp("intermediate.dense"), h, i, true)?,
            act: cfg.hidden_act,
            output: linear(&w.pp("output.dense"), i, h, true)?,
            output_norm: layer_norm(&w.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    pub(crate) fn parts(&self) -> LayerParts<'_> {
        LayerParts {
            attention: &self.attention,
            intermediate: &self.intermediate,
            act: self.act,
            output: &self.output,
            output_norm: &self.output_norm,
        }
    }

    /// `[B, L, hidden]` -> (`[B, L, hidden]`, attention probabilities `[B, heads, L, L]` when
    /// `want_probs`).
    pub fn forward(
        &self,
        hidden: &Tensor,
        ctx: &AttentionContext,
        want_probs: bool,
        mode: &RunMode,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (attended, probs) = self.attention.forward(hidden, ctx, mode)?;
        let inner = self.intermediate.forward(&attended, mode)?;
        let inner = if mode.is_train()
            && matches!(self.act, Activation::Gelu | Activation::GeluPython)
            && crate::train_ops::applies(&[&inner])
        {
            // One op and one backward node instead of candle's ten-op gelu derivative.
            crate::train_ops::gelu_erf(&inner)?
        } else {
            self.act.forward(&inner)?
        };
        let out = mode.dropout(&self.output.forward(&inner, mode)?, self.dropout)?;
        let out = self.output_norm.forward(&(out + &attended)?, mode)?;
        // [H, B, L, L] -> [B, H, L, L]
        let probs = want_probs
            .then(|| probs.transpose(0, 1)?.contiguous())
            .transpose()?;
        Ok((out, probs))
    }
}
