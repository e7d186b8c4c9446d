//! Building blocks loaded from a [`Weights`] view with transformers' names and shapes.

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, Linear};

use crate::weights::{Init, Weights};
use crate::Result;

/// `nn.Linear(in_dim, out_dim, bias)`: `weight [out, in]`, `bias [out]`.
pub fn linear(w: &Weights, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
    let weight = w.get(&[out_dim, in_dim], "weight")?;
    let bias = if bias {
        Some(w.get(&[out_dim], "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// transformers' `LayerNorm(size, eps)`: `weight [size]`, `bias [size]`.
pub fn layer_norm(w: &Weights, size: usize, eps: f64) -> Result<LayerNorm> {
    let weight = w.get(&[size], "weight")?;
    let bias = w.get(&[size], "bias")?;
    Ok(LayerNorm::new(weight, bias, eps))
}

/// Applies a module and converts the engine error.
pub fn apply<M: Module>(m: &M, x: &Tensor) -> Result<Tensor> {
    Ok(m.forward(x)?)
}

/// A head's `nn.Linear`, initialised as transformers does when the checkpoint lacks it.
pub fn linear_or_init(w: &Weights, in_dim: usize, out_dim: usize, std: f64) -> Result<Linear> {
    let weight = w.get_or_init(&[out_dim, in_dim], "weight", Init::Normal(std))?;
    let bias = w.get_or_init(&[out_dim], "bias", Init::Zeros)?;
    Ok(Linear::new(weight, Some(bias)))
}

/// A head's LayerNorm, initialised to ones and zeros when the checkpoint lacks it.
pub fn layer_norm_or_init(w: &Weights, size: usize, eps: f64) -> Result<LayerNorm> {
    let weight = w.get_or_init(&[size], "weight", Init::Ones)?;
    let bias = w.get_or_init(&[size], "bias", Init::Zeros)?;
    Ok(LayerNorm::new(weight, bias, eps))
}
