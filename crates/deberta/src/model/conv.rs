//! `ConvLayer` (nGiE): a 1-D convolution over the embedding output, added to the first layer's
//! output (DeBERTa-v2 xlarge/xxlarge).
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L443>

use candle_core::{Tensor, D};

use crate::activation::Activation;
use crate::config::DebertaV2Config;
use crate::dropout::RunMode;
use crate::nn::{layer_norm, LayerNorm};
use crate::params::Param;
use crate::weights::Weights;
use crate::Result;

pub struct ConvLayer {
    weight: Param,
    bias: Param,
    padding: usize,
    groups: usize,
    act: Activation,
    layer_norm: LayerNorm,
    /// `hidden_dropout_prob`.
    dropout: f64,
}

impl ConvLayer {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let (h, k, groups) = (cfg.hidden_size, cfg.conv_kernel_size, cfg.conv_groups);
        let conv = w.pp("conv");
        Ok(Self {
            weight: conv.get(&[h, h / groups, k], "weight")?,
            bias: conv.get(&[h], "bias")?,
            padding: (k - 1) / 2,
            groups,
            act: cfg.conv_act,
            layer_norm: layer_norm(&w.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// `embeddings`: the encoder input `[B, L, H]`; `residual`: the first layer's output;
    /// `input_mask`: `[B, L]`. Returns the replacement for the first layer's output.
    pub fn forward(
        &self,
        embeddings: &Tensor,
        residual: &Tensor,
        input_mask: &Tensor,
        mode: &RunMode,
    ) -> Result<Tensor> {
        let train = mode.is_train();
        // [B, L, H] -> [B, H, L] -> conv -> [B, L, H]
        let x = embeddings.transpose(1, 2)?.contiguous()?;
        let out = x.conv1d(self.weight.get(train), self.padding, 1, 1, self.groups)?;
        let out = out.broadcast_add(&self.bias.get(train).reshape((1, (), 1))?)?;
        let out = out.transpose(1, 2)?;
        // transformers zeroes positions whose mask is not exactly 1: masked_fill((1 - mask).bool()).
        let mask = input_mask.unsqueeze(D::Minus1)?; // [B, L, 1]
        let keep = mask.eq(1f64)?.broadcast_as(out.shape())?;
        let out = keep.where_cond(&out, &out.zeros_like()?)?;
        let out = self.act.forward(&mode.dropout(&out, self.dropout)?)?;
        let normed = self.layer_norm.forward(&(residual + out)?, mode)?;
        Ok(normed.broadcast_mul(&mask)?)
    }
}
