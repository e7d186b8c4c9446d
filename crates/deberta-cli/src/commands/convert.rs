//! `deberta convert`: rewrite a checkpoint directory in another weight format (issue 6).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct ConvertArgs {
    /// Source checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Target format.
    #[arg(long, value_parser = ["safetensors", "pytorch", "tf"])]
    to: String,
    /// Target directory.
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    bail!(
        "converting {} to {} is not implemented yet",
        args.model.display(),
        args.to
    )
}
