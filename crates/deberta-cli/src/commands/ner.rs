//! `deberta ner`: token classification with entity aggregation (transformers'
//! token-classification).

use anyhow::Result;
use clap::Args;
use deberta::HeadKind;
use deberta_tasks::{Aggregation, NerOptions, TokenClassification};
use serde::Deserialize;

use super::task_common::{load_engine, run_jsonl, write_single, CommonArgs};

#[derive(Args)]
pub struct NerArgs {
    /// The text; without it, JSON lines `{"text": ...}` are read.
    text: Option<String>,
    /// none, simple, first, average or max.
    #[arg(long = "aggregation", default_value = "none")]
    aggregation_strategy: String,
    /// Labels to drop (comma-separated; default O; pass an empty value to keep all).
    #[arg(long, value_delimiter = ',')]
    ignore_labels: Option<Vec<String>>,
    /// Split texts longer than the maximum length into windows overlapping by this many tokens.
    #[arg(long)]
    stride: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Line {
    text: String,
}

pub fn run(args: NerArgs) -> Result<()> {
    let aggregation: Aggregation = args.aggregation_strategy.parse()?;
    let mut options = NerOptions {
        aggregation,
        stride: args.stride,
        ..Default::default()
    };
    if let Some(ignore) = &args.ignore_labels {
        options.ignore_labels = ignore.iter().filter(|l| !l.is_empty()).cloned().collect();
    }
    let pipeline = TokenClassification::new(load_engine(
        &args.common,
        HeadKind::TokenClassification,
        None,
    )?);
    match &args.text {
        Some(text) => write_single(&args.common, pipeline.run(text, &options)),
        None => run_jsonl(&args.common, r#"{"text": ...}"#, |lines: &[Line]| {
            let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
            pipeline.run_batch(&texts, &options)
        }),
    }
}
