//! Learning-rate schedules, as transformers' `get_*_schedule_with_warmup` multipliers: the
//! learning rate of optimiser step `t` (0-based) is `base_lr * multiplier(t)`, so with warmup the
//! first step has lr 0.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/optimization.py>

use std::str::FromStr;

use crate::{Error, Result};

/// `--lr-schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// `get_linear_schedule_with_warmup`: 0 -> 1 over the warmup, then linearly to 0 at the end.
    Linear,
    /// `get_cosine_schedule_with_warmup` (half a cosine period after the warmup).
    Cosine,
    /// `get_constant_schedule_with_warmup` (1 after the warmup; plain constant without one).
    Constant,
}

impl FromStr for ScheduleKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            "constant" => Ok(Self::Constant),
            other => Err(Error::invalid(format!(
                "unknown learning-rate schedule `{other}` (expected linear, cosine or constant)"
            ))),
        }
    }
}

/// A schedule over a known number of optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Schedule {
    /// The multiplier of the base learning rate at optimiser step `step` (0-based).
    pub fn multiplier(&self, step: u64) -> f64 {
        let (step, warmup, total) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < warmup {
            return step / warmup.max(1.0);
        }
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => ((total - step) / (total - warmup).max(1.0)).max(0.0),
            ScheduleKind::Cosine => {
                let progress = (step - warmup) / (total - warmup).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

/// `--warmup-steps` or `--warmup-ratio` (transformers: `ceil(ratio * total)`).
pub fn warmup_steps(steps: Option<u64>, ratio: Option<f64>, total: u64) -> Result<u64> {
    match (steps, ratio) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "give --warmup-steps or --warmup-ratio, not both",
        )),
        (Some(s), None) => Ok(s),
        (None, Some(r)) if (0.0..=1.0).contains(&r) => Ok((r * total as f64).ceil() as u64),
        (None, Some(r)) => Err(Error::invalid(format!(
            "--warmup-ratio must be in [0, 1], got {r}"
        ))),
        (None, None) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_then_decay_to_zero() {
        let s = Schedule {
            kind: ScheduleKind::Linear,
            warmup_steps: 2,
            total_steps: 6,
        };
        let m: Vec<f64> = (0..7).map(|t| s.multiplier(t)).collect();
        assert_eq!(m, vec![0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]);
    }

    #[test]
    fn cosine_and_constant() {
        let c = Schedule {
            kind: ScheduleKind::Cosine,
            warmup_steps: 1,
            total_steps: 5,
        };
        assert_eq!(c.multiplier(0), 0.0);
        assert!((c.multiplier(1) - 1.0).abs() < 1e-12);
        assert!((c.multiplier(3) - 0.5).abs() < 1e-12);
        assert!(c.multiplier(5).abs() < 1e-12);
        let k = Schedule {
            kind: ScheduleKind::Constant,
            warmup_steps: 0,
            total_steps: 5,
        };
        assert_eq!(k.multiplier(0), 1.0);
        assert_eq!(warmup_steps(None, Some(0.1), 25).unwrap(), 3);
        assert!(warmup_steps(Some(1), Some(0.1), 25).is_err());
    }
}
