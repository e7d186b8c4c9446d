//! `deberta train`: fine-tune any head, or pretrain with masked LM, with transformers'
//! Trainer semantics (AdamW, warmup schedules, clipping, accumulation); writes a transformers
//! checkpoint directory with `training_state/` for `--resume`, `log.jsonl` and `metrics.jsonl`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use deberta::HeadKind;
use deberta_train::{
    load_model, FixedBatch, ModelSpec, OwnedLabels, ScheduleKind, TrainOptions, Trainer,
};

use crate::json_input::ForwardInputs;

#[derive(Args)]
pub struct TrainArgs {
    /// Checkpoint directory to start from (with --from-scratch: only its config.json is read).
    #[arg(long)]
    pub(super) model: PathBuf,
    /// Output checkpoint directory.
    #[arg(long)]
    pub(super) output: PathBuf,
    /// Model class: auto follows config.json's `architectures`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "masked-lm", "sequence-classification", "token-classification", "question-answering", "multiple-choice"])]
    pub(super) head: String,
    /// One batch in `deberta forward`'s JSON format with labels, used as every step's batch.
    #[arg(long, conflicts_with_all = ["train", "eval"])]
    pub(super) tokenized: Option<PathBuf>,
    /// Training data, JSON lines in the head's format (see the README).
    #[arg(long)]
    pub(super) train: Option<PathBuf>,
    /// Evaluation data in the same format.
    #[arg(long)]
    pub(super) eval: Option<PathBuf>,
    /// Tokenizer directory (default: --model).
    #[arg(long)]
    pub(super) tokenizer: Option<PathBuf>,
    /// A new label set, in id order (default: the config's, else the training file's).
    #[arg(long, value_delimiter = ',')]
    pub(super) labels: Option<Vec<String>>,
    #[arg(long, default_value_t = 5e-5)]
    pub(super) learning_rate: f64,
    #[arg(long, default_value_t = 0.0)]
    pub(super) weight_decay: f64,
    #[arg(long, conflicts_with = "warmup_ratio")]
    pub(super) warmup_steps: Option<u64>,
    #[arg(long)]
    pub(super) warmup_ratio: Option<f64>,
    /// Optimiser steps (overrides --epochs).
    #[arg(long)]
    pub(super) max_steps: Option<u64>,
    #[arg(long, default_value_t = 3.0)]
    pub(super) epochs: f64,
    #[arg(long, default_value_t = 8)]
    pub(super) batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub(super) gradient_accumulation: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub(super) max_grad_norm: f64,
    #[arg(long, default_value = "linear", value_parser = ["linear", "cosine", "constant"])]
    pub(super) lr_schedule: String,
    #[arg(long, default_value_t = 0.9)]
    pub(super) adam_beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub(super) adam_beta2: f64,
    #[arg(long, default_value_t = 1e-8)]
    pub(super) adam_epsilon: f64,
    /// Layer-wise learning-rate decay (1.0: off).
    #[arg(long, default_value_t = 1.0)]
    pub(super) layer_lr_decay: f64,
    #[arg(long, default_value_t = 42)]
    pub(super) seed: u64,
    /// Evaluate every N steps (and at the end).
    #[arg(long)]
    pub(super) eval_steps: Option<u64>,
    /// Save OUTPUT/checkpoint-N every N steps.
    #[arg(long)]
    pub(super) save_steps: Option<u64>,
    /// Log every N steps.
    #[arg(long, default_value_t = 1)]
    pub(super) logging_steps: u64,
    /// Continue the run saved in this checkpoint directory (same options).
    #[arg(long)]
    pub(super) resume: Option<PathBuf>,
    /// Longest tokenised example (longer ones are truncated; QA contexts are windowed).
    #[arg(long, default_value_t = 128)]
    pub(super) max_length: usize,
    /// Overlap of QA context windows, in tokens (default: 128, at most a quarter of
    /// --max-length).
    #[arg(long)]
    pub(super) doc_stride: Option<usize>,
    /// Masking probability of masked-LM training.
    #[arg(long, default_value_t = 0.15)]
    pub(super) mlm_probability: f64,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = super::parse_threads)]
    pub(super) threads: Option<usize>,
    /// Initialise every weight randomly from config.json (pretraining).
    #[arg(long)]
    pub(super) from_scratch: bool,
}

impl TrainArgs {
    fn options(&self) -> Result<TrainOptions> {
        Ok(TrainOptions {
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup_steps,
            warmup_ratio: self.warmup_ratio,
            max_steps: self.max_steps,
            epochs: self.epochs,
            batch_size: self.batch_size,
            gradient_accumulation: self.gradient_accumulation,
            max_grad_norm: self.max_grad_norm,
            lr_schedule: self.lr_schedule.parse::<ScheduleKind>()?,
            adam_beta1: self.adam_beta1,
            adam_beta2: self.adam_beta2,
            adam_epsilon: self.adam_epsilon,
            layer_lr_decay: self.layer_lr_decay,
            seed: self.seed,
            eval_steps: self.eval_steps,
            save_steps: self.save_steps,
            logging_steps: self.logging_steps,
        })
    }

    pub(super) fn head(&self) -> Result<Option<HeadKind>> {
        Ok(match self.head.as_str() {
            "auto" => None,
            name => Some(name.parse::<HeadKind>()?),
        })
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(t) = args.threads {
        // candle's CPU kernels size their thread pools from RAYON_NUM_THREADS.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    let options = args.options()?;
    options.validate()?;
    let device = Device::Cpu;
    let trainer = match (&args.tokenized, &args.train) {
        (Some(path), _) => resume(&args, tokenized_trainer(&args, path, options, &device)?)?,
        (None, Some(_)) => super::train_data::data_trainer(&args, options, &device)?,
        (None, None) => bail!("give --train FILE (JSON lines) or --tokenized FILE (one batch)"),
    };
    finish(&args, trainer)
}

/// The weights a run starts from: `--resume DIR` when given, else `--model`.
fn weights_dir(args: &TrainArgs) -> &Path {
    args.resume.as_deref().unwrap_or(&args.model)
}

fn tokenized_trainer(
    args: &TrainArgs,
    path: &Path,
    options: TrainOptions,
    device: &Device,
) -> Result<Trainer> {
    let inputs = ForwardInputs::from_file(path, device)?;
    let labels = OwnedLabels {
        labels: inputs.labels.clone(),
        start_positions: inputs.start_positions.clone(),
        end_positions: inputs.end_positions.clone(),
    };
    let spec = ModelSpec {
        dir: weights_dir(args),
        head: args.head()?,
        from_scratch: args.from_scratch && args.resume.is_none(),
        labels: None,
        seed: args.seed,
    };
    let model =
        load_model(&spec, device).with_context(|| format!("loading {}", spec.dir.display()))?;
    let source = FixedBatch::new(inputs.model_input(), labels);
    Ok(Trainer::new(
        model,
        Box::new(source),
        options,
        &args.output,
    )?)
}

fn resume(args: &TrainArgs, trainer: Trainer) -> Result<Trainer> {
    let trainer = match &args.resume {
        Some(dir) => trainer
            .resume(dir)
            .with_context(|| format!("resuming from {}", dir.display()))?,
        None => trainer,
    };
    let tokenizer_dir = args.tokenizer.clone().unwrap_or_else(|| args.model.clone());
    Ok(trainer.with_tokenizer_files(tokenizer_dir))
}

fn finish(args: &TrainArgs, mut trainer: Trainer) -> Result<()> {
    eprintln!(
        "training {} for {} steps (from step {}) into {}",
        trainer.model().kind().class_name(),
        trainer.schedule().total_steps,
        trainer.steps_taken(),
        args.output.display()
    );
    let summary = trainer.run()?;
    eprintln!(
        "done: {} steps, loss {} -> {}; saved {}",
        summary.steps,
        summary.first_loss.map_or("-".into(), |l| format!("{l:.4}")),
        summary.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        summary.output.display()
    );
    if let Some(eval) = &summary.eval {
        eprintln!("final eval: {}", serde_json::Value::Object(eval.clone()));
    }
    Ok(())
}
