//! `DebertaV2Layer`: attention, then the feed-forward block (`DebertaV2Intermediate` and
//! `DebertaV2Output`), post-LayerNorm.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L378>

use candle_core::Tensor;
use candle_nn::{LayerNorm, Linear};

use crate::activation::Activation;
use crate::config::DebertaV2Config;
use crate::model::attention::{AttentionContext, DebertaV2Attention};
use crate::nn::{apply, layer_norm, linear};
use crate::weights::Weights;
use crate::Result;

pub struct DebertaV2Layer {
    attention: DebertaV2Attention,
    intermediate: Linear,
    act: Activation,
    output: Linear,
    output_norm: LayerNorm,
}

impl DebertaV2Layer {
    pub fn load(
        w: &Weights,
        cfg: &DebertaV2Config,
        rel_embeddings: Option<&Tensor>,
    ) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: DebertaV2Attention::load(&w.pp("attention"), cfg, rel_embeddings)?,
            intermediate: linear(&w.pp("intermediate.dense"), h, i, true)?,
            act: cfg.hidden_act,
            output: linear(&w.pp("output.dense"), i, h, true)?,
            output_norm: layer_norm(&w.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
        })
    }

    /// `[B, L, hidden]` -> (`[B, L, hidden]`, attention probabilities `[B, heads, L, L]`).
    pub fn forward(&self, hidden: &Tensor, ctx: &AttentionContext) -> Result<(Tensor, Tensor)> {
        let (attended, probs) = self.attention.forward(hidden, ctx)?;
        let inner = self.act.forward(&apply(&self.intermediate, &attended)?)?;
        let out = (apply(&self.output, &inner)? + &attended)?;
        Ok((apply(&self.output_norm, &out)?, probs))
    }
}
