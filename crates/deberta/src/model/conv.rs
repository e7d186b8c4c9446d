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
        let out = if train {
            self.conv_differentiable(embeddings)?
        } else {
            // [B, L, H] -> [B, H, L] -> conv -> [B, L, H]
            let x = embeddings.transpose(1, 2)?.contiguous()?;
            let out = x.conv1d(self.weight.get(false), self.padding, 1, 1, self.groups)?;
            out.transpose(1, 2)?
        };
        let out = out.broadcast_add(self.bias.get(train))?;
        // transformers zeroes positions whose mask is not exactly 1: masked_fill((1 - mask).bool()).
        let mask = input_mask.unsqueeze(D::Minus1)?; // [B, L, 1]
        let keep = mask.eq(1f64)?.broadcast_as(out.shape())?;
        let out = keep.where_cond(&out, &out.zeros_like()?)?;
        let out = self.act.forward(&mode.dropout(&out, self.dropout)?)?;
        let normed = self.layer_norm.forward(&(residual + out)?, mode)?;
        Ok(normed.broadcast_mul(&mask)?)
    }

    /// The grouped convolution (no bias) as shifted slices and one matmul per group, so that
    /// candle's autograd gives the kernel's gradient (its `conv1d` backward gets it wrong).
    /// `x [B, L, H]` -> `[B, L', H]` with `L' = L + 2 * padding - k + 1`.
    fn conv_differentiable(&self, x: &Tensor) -> Result<Tensor> {
        let weight = self.weight.get(true); // [H_out, H_in / groups, k]
        let (h_out, in_per_group, k) = weight.dims3()?;
        let (b, l, _) = x.dims3()?;
        let out_len = (l + 2 * self.padding + 1).saturating_sub(k);
        let padded = x.pad_with_zeros(1, self.padding, self.padding)?; // [B, L + 2p, H]
        let out_per_group = h_out / self.groups;
        let mut outs = Vec::with_capacity(self.groups);
        for g in 0..self.groups {
            let xg = padded.narrow(2, g * in_per_group, in_per_group)?;
            let shifted = (0..k)
                .map(|t| xg.narrow(1, t, out_len))
                .collect::<candle_core::Result<Vec<_>>>()?;
            // k x [B, L', Hg] -> [B, L', k, Hg] -> [B*L', k*Hg]
            let cols = Tensor::stack(&shifted, 2)?.reshape((b * out_len, k * in_per_group))?;
            // [Og, Hg, k] -> [Og, k, Hg] -> [Og, k*Hg]
            let wg = weight
                .narrow(0, g * out_per_group, out_per_group)?
                .permute((0, 2, 1))?
                .reshape((out_per_group, k * in_per_group))?;
            outs.push(
                cols.matmul(&wg.t()?)?
                    .reshape((b, out_len, out_per_group))?,
            );
        }
        Ok(Tensor::cat(&outs, 2)?)
    }
}
