//! `deberta bench`: time the forward pass (issue 7).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
}

pub fn run(args: BenchArgs) -> Result<()> {
    bail!("bench is not implemented yet ({})", args.model.display())
}
