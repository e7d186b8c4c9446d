//! The training loop, with transformers' `Trainer` semantics: each optimiser step averages the
//! gradients of `gradient_accumulation` micro-batches, clips their global norm, and takes an
//! AdamW step at the schedule's learning rate for that step (so with warmup the first step has
//! lr 0). Checkpoints every `save_steps` into `OUT/checkpoint-N`, evaluation every
//! `eval_steps`, and the final model in `OUT`.
//!
//! Reference: `Trainer._inner_training_loop` in
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/trainer.py>

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use deberta::{DropoutRng, TaskModel};
use serde_json::{Map, Value};

use crate::batches::BatchSource;
use crate::grad::gradients;
use crate::log::{RunLog, StepRecord};
use crate::optim::{clip_coefficient, AdamW};
use crate::options::TrainOptions;
use crate::schedule::{warmup_steps, Schedule};
use crate::state::{load_training_state, save_checkpoint, TrainingState};
use crate::{Error, Result};

/// Evaluates the model (in inference mode) and returns named metrics.
pub trait Evaluator {
    fn evaluate(&self, model: &TaskModel) -> Result<Map<String, Value>>;
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub steps: u64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// The last evaluation's metrics.
    pub eval: Option<Map<String, Value>>,
    pub output: PathBuf,
}

/// A training run over one model and one batch source.
pub struct Trainer {
    model: TaskModel,
    optimizer: AdamW,
    schedule: Schedule,
    options: TrainOptions,
    source: Box<dyn BatchSource>,
    evaluator: Option<Box<dyn Evaluator>>,
    output: PathBuf,
    tokenizer_dir: Option<PathBuf>,
    dropout: DropoutRng,
    step: u64,
    micro: u64,
}

impl Trainer {
    /// A run from step 0 writing into `output`. The model is put in training mode.
    pub fn new(
        mut model: TaskModel,
        source: Box<dyn BatchSource>,
        options: TrainOptions,
        output: impl Into<PathBuf>,
    ) -> Result<Self> {
        options.validate()?;
        let schedule = schedule_for(&options, source.per_epoch())?;
        let dropout = DropoutRng::new(options.seed);
        model.train(dropout.clone())?;
        let layers = model.config().num_hidden_layers;
        let optimizer = AdamW::new(model.parameters(), layers, options.adamw())?;
        Ok(Self {
            model,
            optimizer,
            schedule,
            options,
            source,
            evaluator: None,
            output: output.into(),
            tokenizer_dir: None,
            dropout,
            step: 0,
            micro: 0,
        })
    }

    /// Continues the run saved in `dir` (a checkpoint this trainer wrote); the model must have
    /// been loaded from `dir`. The options must equal the saved ones except the step counts
    /// and the eval/save/log cadence.
    pub fn resume(mut self, dir: &Path) -> Result<Self> {
        let (state, moments) = load_training_state(dir)?;
        let comparable = |o: &TrainOptions| TrainOptions {
            max_steps: None,
            epochs: 0.0,
            eval_steps: None,
            save_steps: None,
            logging_steps: 1,
            ..o.clone()
        };
        let differing = differing_fields(&comparable(&state.options), &comparable(&self.options));
        if !differing.is_empty() {
            return Err(Error::invalid(format!(
                "--resume {}: the run was saved with other options ({}); resume with the same ones",
                dir.display(),
                differing.join(", ")
            )));
        }
        self.optimizer.load_state(&moments, state.step)?;
        self.step = state.step;
        self.micro = state.micro_batches;
        self.dropout = DropoutRng::resume(self.options.seed, state.dropout_calls);
        self.model.train(self.dropout.clone())?;
        Ok(self)
    }

    /// Copies the tokenizer files of `dir` into every checkpoint.
    pub fn with_tokenizer_files(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tokenizer_dir = Some(dir.into());
        self
    }

    /// Evaluates with `evaluator` every `eval_steps` and at the end.
    pub fn with_evaluator(mut self, evaluator: Box<dyn Evaluator>) -> Self {
        self.evaluator = Some(evaluator);
        self
    }

    /// The model being trained.
    pub fn model(&self) -> &TaskModel {
        &self.model
    }

    /// The schedule (its `total_steps` is the run's length).
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Optimiser steps taken.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Runs to the last step, then saves the model into the output directory.
    pub fn run(&mut self) -> Result<TrainSummary> {
        let mut log = RunLog::open(&self.output, self.step)?;
        let (mut first, mut last, mut eval) = (None, None, None);
        while self.step < self.schedule.total_steps {
            let record = self.train_step(&mut log)?;
            first.get_or_insert(record.loss);
            last = Some(record.loss);
            if self
                .options
                .save_steps
                .is_some_and(|n| self.step.is_multiple_of(n))
                && self.step < self.schedule.total_steps
            {
                let dir = self.output.join(format!("checkpoint-{}", self.step));
                self.save(&dir)?;
            }
            if self
                .options
                .eval_steps
                .is_some_and(|n| self.step.is_multiple_of(n))
                && self.step < self.schedule.total_steps
            {
                eval = self.evaluate(&mut log)?.or(eval);
            }
        }
        log.finish();
        eval = self.evaluate(&mut log)?.or(eval);
        let output = self.output.clone();
        self.save(&output)?;
        if let Err(e) = crate::plot::curves::write_curves(&output) {
            tracing::warn!("could not draw the curves: {e}");
        }
        Ok(TrainSummary {
            steps: self.step,
            first_loss: first,
            last_loss: last,
            eval,
            output,
        })
    }

    /// One optimiser step: accumulate, clip, update, log.
    pub fn train_step(&mut self, log: &mut RunLog) -> Result<StepRecord> {
        let accumulation = self.options.gradient_accumulation;
        let mut summed: Option<BTreeMap<String, Tensor>> = None;
        let (mut loss_sum, mut examples, mut epoch) = (0f64, 0u64, 0u64);
        for _ in 0..accumulation {
            let batch = self.source.micro_batch(self.micro, self.model.device())?;
            self.micro += 1;
            let grads = gradients(&self.model, &batch.input, batch.labels.as_labels())?;
            loss_sum += grads.loss_value()? as f64;
            examples += batch.examples as u64;
            epoch = batch.epoch;
            summed = Some(match summed {
                None => grads.grads,
                Some(acc) => add_grads(acc, &grads.grads)?,
            });
        }
        let mut grads = summed.ok_or_else(|| Error::invalid("no micro-batch in a step"))?;
        if accumulation > 1 {
            grads = scale_grads(grads, 1.0 / accumulation as f64)?;
        }
        let (norm, coef) = clip_coefficient(&grads, self.options.max_grad_norm)?;
        let lr = self.options.learning_rate * self.schedule.multiplier(self.step);
        self.optimizer.step(&grads, lr, coef)?;
        self.step += 1;
        let loss = loss_sum / accumulation as f64;
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "the loss is {loss} at step {}: lower --learning-rate or check the labels",
                self.step
            )));
        }
        let per_epoch = self.source.per_epoch().max(1) as f64;
        let epoch_progress = (self.micro as f64 / per_epoch).max(epoch as f64);
        log.step(
            self.step,
            self.schedule.total_steps,
            epoch_progress,
            loss,
            lr,
            norm,
            examples,
        )
    }

    /// Writes the model, the tokenizer files and the training state into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let state = TrainingState::new(
            self.step,
            self.micro,
            self.dropout.calls(),
            self.schedule,
            self.options.clone(),
        );
        let moments = self.optimizer.state_tensors()?;
        save_checkpoint(
            dir,
            &self.model,
            self.tokenizer_dir.as_deref(),
            &state,
            &moments,
        )
    }

    fn evaluate(&mut self, log: &mut RunLog) -> Result<Option<Map<String, Value>>> {
        let Some(evaluator) = &self.evaluator else {
            return Ok(None);
        };
        self.model.eval()?;
        let metrics = evaluator.evaluate(&self.model);
        self.model.train(self.dropout.clone())?;
        let metrics = metrics?;
        log.metrics(self.step, "eval", &metrics)?;
        Ok(Some(metrics))
    }
}

/// The schedule over the run's optimiser steps: `max_steps`, else
/// `ceil(epochs * max(1, micro-batches per epoch / accumulation))` as the Trainer counts them.
pub fn schedule_for(options: &TrainOptions, per_epoch: u64) -> Result<Schedule> {
    let total = match options.max_steps {
        Some(steps) => steps,
        None => {
            let updates = (per_epoch / options.gradient_accumulation as u64).max(1);
            (options.epochs * updates as f64).ceil() as u64
        }
    }
    .max(1);
    Ok(Schedule {
        kind: options.lr_schedule,
        warmup_steps: warmup_steps(options.warmup_steps, options.warmup_ratio, total)?,
        total_steps: total,
    })
}

/// `name: saved -> now` for each option that differs.
fn differing_fields(saved: &TrainOptions, now: &TrainOptions) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(saved), serde_json::to_value(now))
    else {
        return vec!["(unreadable options)".into()];
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} -> {}", b.get(k).unwrap_or(&Value::Null)))
        .collect()
}

fn add_grads(
    mut acc: BTreeMap<String, Tensor>,
    more: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    for (name, g) in acc.iter_mut() {
        if let Some(other) = more.get(name) {
            *g = (&*g + other)?;
        }
    }
    Ok(acc)
}

fn scale_grads(grads: BTreeMap<String, Tensor>, factor: f64) -> Result<BTreeMap<String, Tensor>> {
    grads
        .into_iter()
        .map(|(k, g)| Ok((k, g.affine(factor, 0.0)?)))
        .collect()
}
