//! `torch.optim.AdamW` with transformers' Trainer parameter groups (weight decay on every
//! parameter except biases and LayerNorm weights), optional layer-wise learning-rate decay, and
//! `clip_grad_norm_` over all gradients.
//!
//! Reference: `torch/optim/adamw.py` (single-tensor path: decoupled decay `p *= 1 - lr * wd`,
//! then `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`), `torch/nn/utils/clip_grad.py`
//! and `Trainer.get_decay_parameter_names` in
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/trainer.py>.

use std::cell::RefCell;
use std::collections::BTreeMap;

use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Storage, Tensor};
use deberta::{Param, Parameters};
use rayon::prelude::*;

use crate::{Error, Result};

/// AdamW's hyper-parameters and the Trainer's grouping options.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// Layer-wise lr decay (1.0 = off): the lr of a parameter at depth `d` is scaled by
    /// `decay^(num_layers + 2 - d)` (see [`layer_depth`]).
    pub layer_lr_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
            layer_lr_decay: 1.0,
        }
    }
}

/// ELECTRA's layer-wise depth of a parameter: the embeddings 0, encoder layer `i` `i + 1`, the
/// rest of the encoder (relative embeddings, their LayerNorm, the conv layer) `num_layers`, the
/// pooler `num_layers + 1`, the task heads `num_layers + 2`.
pub fn layer_depth(name: &str, num_layers: usize) -> usize {
    if name.starts_with("deberta.embeddings.") {
        return 0;
    }
    if let Some(rest) = name.strip_prefix("deberta.encoder.layer.") {
        let index = rest.split('.').next().and_then(|i| i.parse::<usize>().ok());
        return index.map_or(num_layers, |i| i + 1);
    }
    if name.starts_with("deberta.encoder.") {
        return num_layers;
    }
    if name.starts_with("pooler.") || name.contains(".pooler.") {
        return num_layers + 1;
    }
    num_layers + 2
}

/// Whether weight decay applies: not to biases nor to LayerNorm weights (the Trainer's
/// `get_decay_parameter_names`).
pub fn decays(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(lower.ends_with("bias") || lower.contains("layernorm"))
}

/// One parameter's optimiser state.
struct Slot {
    name: String,
    param: Param,
    lr_scale: f64,
    weight_decay: f64,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// AdamW over every parameter of a model.
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
    parameters: Parameters,
    step: u64,
}

impl AdamW {
    /// An optimiser at step 0 over `parameters` of a model with `num_layers` encoder layers.
    pub fn new(parameters: &Parameters, num_layers: usize, config: AdamWConfig) -> Result<Self> {
        let slots = parameters
            .iter()
            .map(|(name, param)| {
                let n = param.value().elem_count();
                let depth = layer_depth(name, num_layers);
                let exponent = (num_layers + 2).saturating_sub(depth) as i32;
                Slot {
                    name: name.to_string(),
                    param: param.clone(),
                    lr_scale: config.layer_lr_decay.powi(exponent),
                    weight_decay: if decays(name) {
                        config.weight_decay
                    } else {
                        0.0
                    },
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        Ok(Self {
            config,
            slots,
            parameters: parameters.clone(),
            step: 0,
        })
    }

    /// The number of optimiser steps taken.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// One step at learning rate `lr` (the schedule's value; layer-wise scales apply on top),
    /// with every gradient multiplied by `grad_scale` first (the clipping coefficient).
    pub fn step(
        &mut self,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
        grad_scale: f64,
    ) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2, eps) = (self.config.beta1, self.config.beta2, self.config.epsilon);
        let bias1 = 1.0 - b1.powi(t);
        let bias2_sqrt = (1.0 - b2.powi(t)).sqrt();
        let consts = StepConsts {
            b1: b1 as f32,
            one_minus_b1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            eps: eps as f32,
            bias2_sqrt: bias2_sqrt as f32,
            grad_scale: grad_scale as f32,
            decay: 0.0,
            step_size: 0.0,
        };
        for slot in &mut self.slots {
            let grad = grads
                .get(&slot.name)
                .ok_or_else(|| Error::invalid(format!("no gradient for `{}`", slot.name)))?;
            let lr = lr * slot.lr_scale;
            let consts = StepConsts {
                decay: (1.0 - lr * slot.weight_decay) as f32,
                step_size: (lr / bias1) as f32,
                ..consts
            };
            let value = slot.param.var().as_tensor();
            if value.elem_count() != grad.elem_count() {
                return Err(Error::invalid(format!(
                    "gradient of `{}` has {} values for {} parameters",
                    slot.name,
                    grad.elem_count(),
                    value.elem_count()
                )));
            }
            let in_place = value.device().is_cpu()
                && value.dtype() == DType::F32
                && grad.dtype() == DType::F32
                && value.is_contiguous();
            if in_place {
                // The variable's own storage, updated where it lies: no copy of the parameter,
                // nor of the gradient when it is already contiguous.
                let grad = grad.contiguous()?;
                let op = UpdateOp {
                    consts,
                    m: RefCell::new(&mut slot.m),
                    v: RefCell::new(&mut slot.v),
                };
                value.inplace_op2(&grad, &op)?;
            } else {
                let g = host_values(grad)?;
                let mut p = host_values(slot.param.value())?;
                update(&mut p, &g, &mut slot.m, &mut slot.v, &consts);
                write_values(&slot.param, p)?;
            }
        }
        self.parameters.mark_changed();
        Ok(())
    }

    /// The moments as tensors (`exp_avg.<name>`, `exp_avg_sq.<name>`), for `training_state`.
    pub fn state_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for slot in &self.slots {
            let shape = slot.param.value().shape().clone();
            let m = Tensor::from_slice(&slot.m, shape.clone(), &Device::Cpu)?;
            let v = Tensor::from_slice(&slot.v, shape, &Device::Cpu)?;
            out.insert(format!("exp_avg.{}", slot.name), m);
            out.insert(format!("exp_avg_sq.{}", slot.name), v);
        }
        Ok(out)
    }

    /// Restores the moments and the step count saved by [`Self::state_tensors`].
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        for slot in &mut self.slots {
            for (prefix, dst) in [("exp_avg", &mut slot.m), ("exp_avg_sq", &mut slot.v)] {
                let key = format!("{prefix}.{}", slot.name);
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| Error::invalid(format!("the optimiser state lacks `{key}`")))?;
                let values = host_values(t)?;
                if values.len() != dst.len() {
                    return Err(Error::invalid(format!(
                        "the optimiser state's `{key}` has {} values for {} parameters",
                        values.len(),
                        dst.len()
                    )));
                }
                *dst = values;
            }
        }
        self.step = step;
        Ok(())
    }
}

/// `clip_grad_norm_`: the global L2 norm of all gradients and the factor
/// `min(1, max_norm / (norm + 1e-6))` to multiply them by (1 when `max_norm <= 0`: no clipping).
pub fn clip_coefficient(grads: &BTreeMap<String, Tensor>, max_norm: f64) -> Result<(f64, f64)> {
    let mut sum = 0f64;
    for g in grads.values() {
        sum += squared_sum(g)?;
    }
    let norm = sum.sqrt();
    let coef = if max_norm > 0.0 {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    };
    Ok((norm, coef))
}

/// AdamW's per-step scalars for one parameter, in f32 as `torch.optim.AdamW` computes on f32
/// parameters.
#[derive(Debug, Clone, Copy)]
struct StepConsts {
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    eps: f32,
    bias2_sqrt: f32,
    grad_scale: f32,
    /// `1 - lr * weight_decay`.
    decay: f32,
    /// `lr / (1 - b1^t)`.
    step_size: f32,
}

/// Elements per parallel chunk of the update and of the squared norm: large enough that a
/// task's overhead is negligible, small enough to spread a big table over every thread.
const CHUNK: usize = 1 << 16;

/// One AdamW step over `p`, `g`, `m`, `v` (equal lengths), parallel over chunks.
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &StepConsts) {
    let kernel = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g * c.grad_scale;
            let mi = c.b1 * *m + c.one_minus_b1 * g;
            let vi = c.b2 * *v + c.one_minus_b2 * g * g;
            *m = mi;
            *v = vi;
            let denom = vi.sqrt() / c.bias2_sqrt + c.eps;
            *p = *p * c.decay - c.step_size * mi / denom;
        }
    };
    if p.len() <= CHUNK {
        kernel(p, g, m, v);
        return;
    }
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| kernel(p, g, m, v));
}

/// The in-place update of a parameter variable's f32 storage by its gradient.
struct UpdateOp<'a> {
    consts: StepConsts,
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
}

impl InplaceOp2 for UpdateOp<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("adamw-update: f32 storage expected")
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("adamw-update: contiguous tensors expected")
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if p.len() != g.len() || p.len() != m.len() || p.len() != v.len() {
            candle_core::bail!("adamw-update: length mismatch")
        }
        update(p, g, &mut m[..], &mut v[..], &self.consts);
        Ok(())
    }
}

/// The sum of squares of a tensor's values in f64, read in place when it is a contiguous f32
/// CPU tensor.
fn squared_sum(t: &Tensor) -> Result<f64> {
    let sum = |s: &[f32]| -> f64 {
        // Partial sums added in chunk order, so the norm does not depend on scheduling.
        s.par_chunks(CHUNK)
            .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
            .collect::<Vec<_>>()
            .into_iter()
            .sum()
    };
    if t.device().is_cpu() && t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(values)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(sum(&values[a..b]));
        }
    }
    Ok(sum(&host_values(t)?))
}

fn host_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

fn write_values(param: &Param, values: Vec<f32>) -> Result<()> {
    let current = param.value();
    let t = Tensor::from_vec(values, current.shape().clone(), current.device())?
        .to_dtype(current.dtype())?;
    param.var().set(&t)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_and_decay_groups() {
        assert_eq!(
            layer_depth("deberta.embeddings.word_embeddings.weight", 2),
            0
        );
        assert_eq!(
            layer_depth(
                "deberta.encoder.layer.1.attention.self.query_proj.weight",
                2
            ),
            2
        );
        assert_eq!(layer_depth("deberta.encoder.rel_embeddings.weight", 2), 2);
        assert_eq!(layer_depth("pooler.dense.weight", 2), 3);
        assert_eq!(layer_depth("classifier.weight", 2), 4);
        assert!(decays("classifier.weight"));
        assert!(!decays("classifier.bias"));
        assert!(!decays("deberta.encoder.layer.0.output.LayerNorm.weight"));
        assert!(decays("deberta.embeddings.word_embeddings.weight"));
    }
}
