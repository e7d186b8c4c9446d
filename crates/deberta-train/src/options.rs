//! The options of a training run: the `deberta train` flags, with transformers' `Trainer`
//! defaults. Saved with every checkpoint (`training_state/state.json`).

use crate::optim::AdamWConfig;
use crate::schedule::ScheduleKind;
use crate::{Error, Result};

/// Everything that shapes a run (not where its data or model come from).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_steps: Option<u64>,
    pub warmup_ratio: Option<f64>,
    /// Optimiser steps; overrides `epochs` when set.
    pub max_steps: Option<u64>,
    pub epochs: f64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step (their gradients are averaged).
    pub gradient_accumulation: usize,
    /// Global gradient-norm clip (`<= 0`: off).
    pub max_grad_norm: f64,
    pub lr_schedule: ScheduleKind,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// Layer-wise learning-rate decay (1.0 = off).
    pub layer_lr_decay: f64,
    /// Seeds dropout, data order, MLM masking and new weights.
    pub seed: u64,
    /// Evaluate every N optimiser steps (and at the end) when an eval set is given.
    pub eval_steps: Option<u64>,
    /// Save a checkpoint (`OUT/checkpoint-N`) every N optimiser steps.
    pub save_steps: Option<u64>,
    /// Log (log.jsonl, stderr) every N optimiser steps.
    pub logging_steps: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            weight_decay: 0.0,
            warmup_steps: None,
            warmup_ratio: None,
            max_steps: None,
            epochs: 3.0,
            batch_size: 8,
            gradient_accumulation: 1,
            max_grad_norm: 1.0,
            lr_schedule: ScheduleKind::Linear,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            layer_lr_decay: 1.0,
            seed: 42,
            eval_steps: None,
            save_steps: None,
            logging_steps: 1,
        }
    }
}

impl TrainOptions {
    /// Rejects values no run can use, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let positive = |v: f64, flag: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "--{flag} must be positive, got {v}"
                )))
            }
        };
        let unit = |v: f64, flag: &str| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "--{flag} must be in [0, 1), got {v}"
                )))
            }
        };
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return Err(Error::invalid("--learning-rate must be >= 0"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid("--weight-decay must be >= 0"));
        }
        if self.max_steps.is_none() {
            positive(self.epochs, "epochs")?;
        }
        if self.max_steps == Some(0) {
            return Err(Error::invalid("--max-steps must be at least 1"));
        }
        if self.batch_size == 0 || self.gradient_accumulation == 0 || self.logging_steps == 0 {
            return Err(Error::invalid(
                "--batch-size, --gradient-accumulation and logging steps must be at least 1",
            ));
        }
        unit(self.adam_beta1, "adam-beta1")?;
        unit(self.adam_beta2, "adam-beta2")?;
        positive(self.adam_epsilon, "adam-epsilon")?;
        positive(self.layer_lr_decay, "layer-lr-decay")?;
        if self.eval_steps == Some(0) || self.save_steps == Some(0) {
            return Err(Error::invalid(
                "--eval-steps and --save-steps must be at least 1",
            ));
        }
        Ok(())
    }

    /// The optimiser's configuration.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            learning_rate: self.learning_rate,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            epsilon: self.adam_epsilon,
            weight_decay: self.weight_decay,
            layer_lr_decay: self.layer_lr_decay,
        }
    }
}
