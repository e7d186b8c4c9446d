//! `deberta fill-mask`: the most likely tokens for each `[MASK]` (transformers' fill-mask).

use anyhow::Result;
use clap::Args;
use deberta::HeadKind;
use deberta_tasks::{FillMask, FillMaskOptions};
use serde::Deserialize;

use super::task_common::{load_engine, run_jsonl, write_single, CommonArgs};

#[derive(Args)]
pub struct FillMaskArgs {
    /// A text with one or more [MASK]; without it, JSON lines `{"text": ...}` are read.
    text: Option<String>,
    /// Predictions per mask.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Only score these tokens (repeat the flag or separate with commas).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Line {
    text: String,
}

pub fn run(args: FillMaskArgs) -> Result<()> {
    let pipeline = FillMask::new(load_engine(
        &args.common,
        HeadKind::MaskedLm,
        Some(super::task_common::SHIPPED_MLM),
    )?)?;
    let options = FillMaskOptions {
        top_k: args.top_k,
        targets: args.targets.clone(),
    };
    match &args.text {
        Some(text) => write_single(&args.common, pipeline.run(text, &options)),
        None => run_jsonl(&args.common, r#"{"text": ...}"#, |lines: &[Line]| {
            let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
            pipeline.run_batch(&texts, &options)
        }),
    }
}
