//! Building blocks loaded from a [`Weights`] view with transformers' names and shapes, holding
//! [`Param`]s so that each runs on the trainable variables in training mode and on their
//! detached values in inference.
//!
//! In training mode LayerNorm and softmax are written with differentiable primitives: candle-nn's
//! fused `layer_norm` and `softmax_last_dim` have no backward and would stop the gradients.

use candle_core::{DType, Tensor, D};

use crate::dropout::RunMode;
use crate::params::Param;
use crate::weights::{Init, Weights};
use crate::Result;

/// `nn.Linear(in_dim, out_dim, bias)`: `weight [out, in]`, `bias [out]`.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Param,
    bias: Option<Param>,
}

impl Linear {
    /// `x [..., in]` -> `[..., out]`.
    pub fn forward(&self, x: &Tensor, mode: &RunMode) -> Result<Tensor> {
        let train = mode.is_train();
        linear_forward(
            x,
            self.weight.get(train),
            self.bias.as_ref().map(|b| b.get(train)),
        )
    }

    pub fn weight(&self) -> &Param {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// The detached values as a candle-nn module (for inference-only preparations).
    pub fn to_candle(&self) -> candle_nn::Linear {
        candle_nn::Linear::new(
            self.weight.value().clone(),
            self.bias.as_ref().map(|b| b.value().clone()),
        )
    }
}

/// `x W^T + b` over any leading dimensions.
pub fn linear_forward(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = match x.dims() {
        [b1, b2, m, k] => x
            .reshape((b1 * b2 * m, *k))?
            .matmul(&weight.t()?)?
            .reshape((*b1, *b2, *m, ()))?,
        [b, m, k] => x
            .reshape((b * m, *k))?
            .matmul(&weight.t()?)?
            .reshape((*b, *m, ()))?,
        _ => x.matmul(&weight.t()?)?,
    };
    Ok(match bias {
        Some(b) if weight.track_op() && crate::train_ops::applies(&[&y, b]) => {
            crate::train_ops::bias_add(&y, b)?
        }
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// transformers' `LayerNorm(size, eps)`: `weight [size]`, `bias [size]`, over the last dim.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Param,
    bias: Param,
    eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor, mode: &RunMode) -> Result<Tensor> {
        let train = mode.is_train();
        let (w, b) = (self.weight.get(train), self.bias.get(train));
        if train {
            if crate::train_ops::applies(&[x, w, b]) {
                return crate::train_ops::layer_norm(x, w, b, self.eps);
            }
            return layer_norm_differentiable(x, w, b, self.eps);
        }
        Ok(candle_nn::ops::layer_norm(
            &x.contiguous()?,
            w,
            b,
            self.eps as f32,
        )?)
    }

    pub fn weight(&self) -> &Param {
        &self.weight
    }

    pub fn bias(&self) -> &Param {
        &self.bias
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The detached values as a candle-nn module (for inference-only preparations).
    pub fn to_candle(&self) -> candle_nn::LayerNorm {
        candle_nn::LayerNorm::new(
            self.weight.value().clone(),
            self.bias.value().clone(),
            self.eps,
        )
    }
}

/// LayerNorm from primitive ops (biased variance, as PyTorch), computed in f32 at least.
fn layer_norm_differentiable(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = promote(x)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    let out = normed.to_dtype(dtype)?.broadcast_mul(w)?.broadcast_add(b)?;
    Ok(out)
}

/// Softmax over the last dimension: candle-nn's fused kernel in inference, differentiable ops
/// (max-subtracted, in f32 at least) in training.
pub fn softmax_last_dim(x: &Tensor, mode: &RunMode) -> Result<Tensor> {
    if !mode.is_train() {
        return Ok(candle_nn::ops::softmax_last_dim(x)?);
    }
    let dtype = x.dtype();
    let x = promote(x)?;
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?.to_dtype(dtype)?)
}

fn promote(x: &Tensor) -> Result<Tensor> {
    Ok(match x.dtype() {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    })
}

/// `nn.Embedding(rows, dim, padding_idx)`.
#[derive(Clone, Debug)]
pub struct Embedding {
    weight: Param,
    /// The row whose lookups pass no gradient back (PyTorch's `padding_idx`).
    padding_idx: Option<u32>,
}

impl Embedding {
    /// `ids [B, L]` u32 -> `[B, L, dim]`.
    pub fn forward(&self, ids: &Tensor, mode: &RunMode) -> Result<Tensor> {
        let train = mode.is_train();
        let table = self.weight.get(train);
        let dims = ids.dims().to_vec();
        let flat = ids.flatten_all()?;
        let mut rows = table.index_select(&flat, 0)?; // [N, dim]
        if let (true, Some(pad)) = (train, self.padding_idx) {
            // Same values; the lookups of `pad` take the detached rows, so no gradient.
            let pads = Tensor::full(pad, flat.shape(), flat.device())?.to_dtype(flat.dtype())?;
            let keep = flat.ne(&pads)?.unsqueeze(1)?.broadcast_as(rows.shape())?;
            rows = keep.where_cond(&rows, &rows.detach())?;
        }
        let mut shape = dims;
        shape.push(table.dim(1)?);
        Ok(rows.reshape(shape)?)
    }

    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// Sets `padding_idx` (ids outside the table are ignored, as no lookup can hit them).
    pub fn with_padding_idx(mut self, padding_idx: Option<i64>) -> Self {
        self.padding_idx = padding_idx.and_then(|p| u32::try_from(p).ok());
        self
    }
}

/// Loads `nn.Linear(in_dim, out_dim, bias)`.
pub fn linear(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
    let weight = w.get(&[out_dim, in_dim], "weight")?;
    let bias = if bias {
        Some(w.get(&[out_dim], "bias")?)
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

/// Loads transformers' `LayerNorm(size, eps)`.
pub fn layer_norm(w: &Weights, size: usize, eps: f64) -> Result<LayerNorm> {
    let weight = w.get(&[size], "weight")?;
    let bias = w.get(&[size], "bias")?;
    Ok(LayerNorm { weight, bias, eps })
}

/// Loads `nn.Embedding(rows, dim)`.
pub fn embedding(w: &Weights, rows: usize, dim: usize) -> Result<Embedding> {
    Ok(Embedding {
        weight: w.get(&[rows, dim], "weight")?,
        padding_idx: None,
    })
}

/// A head's `nn.Linear`, initialised as transformers does when the checkpoint lacks it.
pub fn linear_or_init(w: &Weights, in_dim: usize, out_dim: usize, std: f64) -> Result<Linear> {
    let weight = w.get_or_init(&[out_dim, in_dim], "weight", Init::Normal(std))?;
    let bias = w.get_or_init(&[out_dim], "bias", Init::Zeros)?;
    Ok(Linear {
        weight,
        bias: Some(bias),
    })
}

/// A head's LayerNorm, initialised to ones and zeros when the checkpoint lacks it.
pub fn layer_norm_or_init(w: &Weights, size: usize, eps: f64) -> Result<LayerNorm> {
    let weight = w.get_or_init(&[size], "weight", Init::Ones)?;
    let bias = w.get_or_init(&[size], "bias", Init::Zeros)?;
    Ok(LayerNorm { weight, bias, eps })
}
