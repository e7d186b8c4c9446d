//! `deberta convert`: rewrite a checkpoint directory in another weight format (issue 6).
//!
//! Loads the model class `config.json` names, from whichever weights file transformers would
//! pick (or `--from`), and writes `config.json`, the weights and the tokenizer files to
//! `--output`, so that transformers loads the result with no missing or unexpected keys.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use deberta::export::convert;
use deberta::WeightFormat;

#[derive(Args)]
pub struct ConvertArgs {
    /// Source checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Target format: model.safetensors, pytorch_model.bin or tf_model.h5.
    #[arg(long, value_parser = ["safetensors", "pytorch", "tf"])]
    to: String,
    /// Read this weights file when the source has several (default: safetensors, then
    /// pytorch, then tf, as transformers does).
    #[arg(long, value_parser = ["safetensors", "pytorch", "tf"])]
    from: Option<String>,
    /// Target directory (created; must differ from the source).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let to: WeightFormat = args.to.parse()?;
    let from = args.from.as_deref().map(str::parse).transpose()?;
    let done = convert(&args.model, &args.output, to, from).with_context(|| {
        format!(
            "converting {} to {}",
            args.model.display(),
            args.output.display()
        )
    })?;
    let read: Vec<String> = done
        .report
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    eprintln!("{} from {}", done.kind.class_name(), read.join(", "));
    for name in &done.report.unexpected {
        eprintln!("warning: unused checkpoint tensor {name} was not written");
    }
    for name in &done.report.initialized {
        eprintln!("warning: {name} is not in the checkpoint; wrote a newly initialised value");
    }
    for file in &done.files {
        eprintln!("wrote {}", file.display());
    }
    Ok(())
}
