//! One training-mode forward and backward pass: the loss and the gradient of every parameter
//! under transformers' names (`model.named_parameters()`, tied parameters once).
//!
//! The backward pass is candle's autograd over the candle execution path; in training mode the
//! model's LayerNorm and softmax are written with differentiable primitives (candle-nn's fused
//! kernels have no backward). The golden tests compare every gradient with transformers'.

use std::collections::BTreeMap;

use candle_core::Tensor;
use deberta::{ForwardOptions, Labels, ModelInput, TaskModel};

use crate::{Error, Result};

/// The loss of one batch and the gradient of every parameter.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// The scalar loss, detached.
    pub loss: Tensor,
    /// `d loss / d parameter` by transformers name; zeros for a parameter the loss does not
    /// reach (as PyTorch's `p.grad` is `None` there).
    pub grads: BTreeMap<String, Tensor>,
}

impl Gradients {
    /// The loss as a number.
    pub fn loss_value(&self) -> Result<f32> {
        Ok(self
            .loss
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?)
    }
}

/// The loss of `input` against `labels` and its gradients. The model must be in training mode
/// ([`TaskModel::train`]) and the labels must give a loss.
pub fn gradients(model: &TaskModel, input: &ModelInput, labels: Labels) -> Result<Gradients> {
    if !model.plan().training() {
        return Err(Error::invalid(
            "gradients need the model in training mode (TaskModel::train)",
        ));
    }
    let dims = input.input_ids.dims();
    let len = dims.last().copied().unwrap_or(0);
    let rows = dims.iter().rev().skip(1).product::<usize>();
    deberta::limits::check_training(model.config(), rows, len)?;
    let out = model.forward(input, labels, ForwardOptions::default())?;
    let loss = out.loss.ok_or_else(|| {
        Error::invalid("the batch gives no loss: add labels (or start_positions/end_positions)")
    })?;
    let loss = loss.flatten_all()?.sum_all()?;
    let store = loss.backward()?;
    let mut grads = BTreeMap::new();
    for (name, param) in model.parameters().iter() {
        let grad = match store.get(param.var().as_tensor()) {
            Some(g) => g.detach(),
            None => param.value().zeros_like()?,
        };
        grads.insert(name.to_string(), grad);
    }
    Ok(Gradients {
        loss: loss.detach(),
        grads,
    })
}
