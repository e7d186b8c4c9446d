//! What a run reports: one JSON line per logged step in `OUT/log.jsonl` (always), one per
//! evaluation in `OUT/metrics.jsonl`, and a progress line on stderr when it is a terminal.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::{Error, Result};

/// One logged optimiser step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRecord {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: f64,
    /// The mean loss of the step's micro-batches.
    pub loss: f64,
    /// Exponential moving average of the loss (0.9).
    pub smoothed_loss: f64,
    pub learning_rate: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    pub examples_per_second: f64,
    pub elapsed_seconds: f64,
    pub eta_seconds: f64,
}

/// The run's log files and progress display.
pub struct RunLog {
    log: File,
    metrics: File,
    progress: bool,
    started: Instant,
    examples: u64,
    smoothed: Option<f64>,
    /// The step the run (or this resumed part of it) started from.
    first_step: u64,
}

impl RunLog {
    /// Opens (appends to) `OUT/log.jsonl` and `OUT/metrics.jsonl` for a run at `first_step`.
    pub fn open(dir: &Path, first_step: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let open = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(&path, e))
        };
        Ok(Self {
            log: open("log.jsonl")?,
            metrics: open("metrics.jsonl")?,
            progress: std::io::stderr().is_terminal(),
            started: Instant::now(),
            examples: 0,
            smoothed: None,
            first_step,
        })
    }

    /// Records one optimiser step; returns what was logged.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        step: u64,
        total_steps: u64,
        epoch: f64,
        loss: f64,
        learning_rate: f64,
        grad_norm: f64,
        examples: u64,
    ) -> Result<StepRecord> {
        self.examples += examples;
        let smoothed = match self.smoothed {
            Some(s) if s.is_finite() => 0.9 * s + 0.1 * loss,
            _ => loss,
        };
        self.smoothed = Some(smoothed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let per_step = elapsed / step.saturating_sub(self.first_step).max(1) as f64;
        let record = StepRecord {
            step,
            total_steps,
            epoch,
            loss,
            smoothed_loss: smoothed,
            learning_rate,
            grad_norm,
            examples_per_second: self.examples as f64 / elapsed.max(1e-9),
            elapsed_seconds: elapsed,
            eta_seconds: per_step * total_steps.saturating_sub(step) as f64,
        };
        self.write_line(&serde_json::to_value(&record).unwrap_or(Value::Null), false)?;
        if self.progress {
            eprint!(
                "\rstep {}/{} epoch {:.2} loss {:.4} lr {:.3e} {:.1} ex/s ETA {}   ",
                step,
                total_steps,
                epoch,
                smoothed,
                learning_rate,
                record.examples_per_second,
                clock(record.eta_seconds)
            );
        }
        Ok(record)
    }

    /// Records an evaluation (`{"step", "split", metrics...}`) and prints it on stderr.
    pub fn metrics(&mut self, step: u64, split: &str, metrics: &Map<String, Value>) -> Result<()> {
        let mut line = Map::new();
        line.insert("step".into(), Value::from(step));
        line.insert("split".into(), Value::from(split));
        line.extend(metrics.clone());
        let value = Value::Object(line);
        self.write_line(&value, true)?;
        if self.progress {
            eprintln!();
        }
        eprintln!("{split} at step {step}: {}", Value::Object(metrics.clone()));
        Ok(())
    }

    /// Ends the progress line.
    pub fn finish(&mut self) {
        if self.progress {
            eprintln!();
        }
    }

    fn write_line(&mut self, value: &Value, metrics: bool) -> Result<()> {
        let file = if metrics {
            &mut self.metrics
        } else {
            &mut self.log
        };
        writeln!(file, "{value}")
            .and_then(|_| file.flush())
            .map_err(|e| Error::Io {
                path: if metrics {
                    "metrics.jsonl"
                } else {
                    "log.jsonl"
                }
                .into(),
                source: e,
            })
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}
