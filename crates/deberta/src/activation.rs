//! Activation functions by their transformers names (`ACT2FN`).
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/activations.py>

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Every activation name a DeBERTa checkpoint can carry in `hidden_act`, `pooler_hidden_act` or
/// `conv_act`. Each name keeps its own variant so a config saves back exactly as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `x * Φ(x)` with erf (transformers' `"gelu"`).
    Gelu,
    /// Exact GELU written out in Python (same values).
    GeluPython,
    /// Tanh approximation of GELU (OpenAI GPT).
    GeluNew,
    /// Tanh approximation of GELU, PyTorch's `approximate="tanh"`.
    GeluPytorchTanh,
    /// Tanh approximation of GELU written out in Python.
    GeluPythonTanh,
    /// Tanh approximation of GELU with pre-multiplied constants.
    GeluFast,
    /// The "accurate" tanh GELU of MEGA (same formula as `gelu_new`).
    GeluAccurate,
    /// Exact GELU clipped to [-10, 10].
    #[serde(rename = "gelu_10")]
    Gelu10,
    /// `x * sigmoid(1.702 x)`.
    QuickGelu,
    Relu,
    Relu6,
    /// `relu(x)^2`.
    Relu2,
    /// `leaky_relu` with PyTorch's default slope 0.01.
    LeakyRelu,
    Silu,
    Swish,
    Tanh,
    Sigmoid,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// Identity.
    Linear,
}

impl Activation {
    /// Applies the activation element-wise.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        let y = match self {
            Activation::Gelu | Activation::GeluPython => x.gelu_erf()?,
            Activation::GeluNew
            | Activation::GeluPytorchTanh
            | Activation::GeluPythonTanh
            | Activation::GeluFast
            | Activation::GeluAccurate => x.gelu()?,
            Activation::Gelu10 => x.gelu_erf()?.clamp(-10f32, 10f32)?,
            Activation::QuickGelu => (x * candle_nn::ops::sigmoid(&(x * 1.702)?)?)?,
            Activation::Relu => x.relu()?,
            Activation::Relu6 => x.clamp(0f32, 6f32)?,
            Activation::Relu2 => x.relu()?.sqr()?,
            Activation::LeakyRelu => candle_nn::ops::leaky_relu(x, 0.01)?,
            Activation::Silu | Activation::Swish => x.silu()?,
            Activation::Tanh => x.tanh()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
            Activation::Mish => mish(x)?,
            Activation::Linear => x.clone(),
        };
        Ok(y)
    }
}

/// `x * tanh(softplus(x))`, with PyTorch's softplus threshold (x > 20 ⇒ softplus(x) = x).
fn mish(x: &Tensor) -> Result<Tensor> {
    let softplus_raw = (x.exp()? + 1.0)?.log()?;
    let large = x.gt(20f64)?;
    let softplus = large.where_cond(x, &softplus_raw)?;
    Ok((x * softplus.tanh()?)?)
}
