//! `deberta train --train FILE [--eval FILE]`: the JSON-lines formats of each head, tokenised
//! as transformers' example scripts prepare them; a bad line is reported and skipped.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use deberta::pretrained::load_config;
use deberta::HeadKind;
use deberta_tokenizer::Tokenizer;
use deberta_train::data::{
    apply_label_set, label_set_from, load_jsonl, DataOptions, Dataset, Task,
};
use deberta_train::{
    load_model, DatasetBatches, DatasetEvaluator, ModelSpec, TrainOptions, Trainer,
};

use super::train::{weights_dir, TrainArgs};

/// How many bad lines are listed on stderr (all are counted).
const SHOWN_BAD_LINES: usize = 10;

pub fn data_trainer(args: &TrainArgs, options: TrainOptions, device: &Device) -> Result<Trainer> {
    let dir = weights_dir(args);
    let mut config = load_config(dir).with_context(|| format!("reading {}", dir.display()))?;
    let head = match args.head()? {
        Some(h) => h,
        None => HeadKind::from_config(&config)?,
    };
    let task = Task::from_head(head)?;
    let tokenizer_dir = args.tokenizer.as_deref().unwrap_or(&args.model);
    let tokenizer = Tokenizer::from_dir(tokenizer_dir)
        .with_context(|| format!("loading the tokenizer from {}", tokenizer_dir.display()))?;
    let opts = DataOptions {
        max_length: args.max_length,
        doc_stride: args.doc_stride.unwrap_or(128.min(args.max_length / 4)),
        mlm_probability: args.mlm_probability,
        labels: args.labels.clone(),
        ..DataOptions::default()
    };
    let train_path = args.train.as_deref().context("--train is required here")?;
    // A resumed run keeps the label set its checkpoint saved.
    let labels = match &args.resume {
        Some(_) => None,
        None => label_set_from(train_path, task, &config, &opts)?,
    };
    if let Some(l) = &labels {
        apply_label_set(&mut config, l);
        eprintln!(
            "labels ({}): {}",
            l.problem_type.as_str(),
            l.names.join(", ")
        );
    }
    let train = read(train_path, task, &tokenizer, &config, &opts)?;
    let eval = args
        .eval
        .as_deref()
        .map(|p| read(p, task, &tokenizer, &config, &opts))
        .transpose()?;
    let spec = ModelSpec {
        dir,
        head: Some(head),
        from_scratch: args.from_scratch && args.resume.is_none(),
        labels,
        seed: args.seed,
    };
    let model = load_model(&spec, device).with_context(|| format!("loading {}", dir.display()))?;
    let source = DatasetBatches::new(train, options.batch_size, options.seed)?;
    let batch_size = options.batch_size;
    let seed = options.seed;
    let mut trainer = Trainer::new(model, Box::new(source), options, &args.output)?;
    if let Some(eval) = eval {
        trainer = trainer.with_evaluator(Box::new(DatasetEvaluator::new(eval, batch_size, seed)?));
    }
    Ok(trainer)
}

/// Reads one data file and reports its bad lines on stderr.
fn read(
    path: &Path,
    task: Task,
    tokenizer: &Tokenizer,
    config: &deberta::DebertaV2Config,
    opts: &DataOptions,
) -> Result<Dataset> {
    let ds = load_jsonl(path, task, tokenizer, config, opts)?;
    for bad in ds.skipped.iter().take(SHOWN_BAD_LINES) {
        eprintln!("{}: skipped {}", path.display(), bad);
    }
    if ds.skipped.len() > SHOWN_BAD_LINES {
        eprintln!(
            "{}: ... {} bad lines in all",
            path.display(),
            ds.skipped.len()
        );
    }
    eprintln!(
        "{}: {} examples, {} features",
        path.display(),
        ds.num_examples(),
        ds.len()
    );
    Ok(ds)
}
