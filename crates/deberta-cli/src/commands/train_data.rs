//! `deberta train --train FILE [--eval FILE]`: the JSON-lines formats of each head, tokenised
//! as transformers' example scripts prepare them (`deberta_train::TrainJob`); bad lines are
//! listed with their numbers and skipped.

use anyhow::{Context, Result};
use candle_core::Device;
use deberta_train::data::DataOptions;
use deberta_train::{TrainJob, TrainOptions, Trainer};

use super::train::TrainArgs;

/// How many bad lines are listed on stderr (all are counted).
const SHOWN_BAD_LINES: usize = 10;

pub fn data_trainer(args: &TrainArgs, options: TrainOptions, device: &Device) -> Result<Trainer> {
    let train = args.train.clone().context("--train is required here")?;
    let job = TrainJob {
        tokenizer: args.tokenizer.clone(),
        head: args.head()?,
        eval: args.eval.clone(),
        data: DataOptions {
            max_length: args.max_length,
            doc_stride: args.doc_stride.unwrap_or(128.min(args.max_length / 4)),
            mlm_probability: args.mlm_probability,
            labels: args.labels.clone(),
            ..DataOptions::default()
        },
        options,
        from_scratch: args.from_scratch,
        resume: args.resume.clone(),
        ..TrainJob::new(&args.model, train, &args.output)
    };
    let (trainer, report) = job
        .build(device)
        .with_context(|| format!("preparing the run from {}", args.model.display()))?;
    for (path, bad) in report.skipped.iter().take(SHOWN_BAD_LINES) {
        eprintln!("{}: skipped {bad}", path.display());
    }
    if report.skipped.len() > SHOWN_BAD_LINES {
        eprintln!("... {} bad lines in all", report.skipped.len());
    }
    if let Some(l) = &report.labels {
        eprintln!(
            "labels ({}): {}",
            l.problem_type.as_str(),
            l.names.join(", ")
        );
    }
    eprintln!(
        "{:?}: {} training examples ({} features){}",
        report.task,
        report.train_examples,
        report.train_features,
        report
            .eval_examples
            .map_or(String::new(), |n| format!(", {n} evaluation examples"))
    );
    Ok(trainer)
}
