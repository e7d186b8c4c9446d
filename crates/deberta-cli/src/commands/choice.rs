//! `deberta choice`: multiple choice, a softmax score per choice, best first.

use anyhow::Result;
use clap::Args;
use deberta::HeadKind;
use deberta_tasks::{ChoiceInput, MultipleChoice};

use super::task_common::{load_engine, run_jsonl, write_single, CommonArgs};

#[derive(Args)]
pub struct ChoiceArgs {
    /// The prompt; with --choice, one input; otherwise JSON lines
    /// `{"prompt": ..., "choices": [...]}` are read.
    #[arg(long)]
    prompt: Option<String>,
    /// A choice (repeat the flag for each).
    #[arg(long = "choice")]
    choices: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: ChoiceArgs) -> Result<()> {
    let pipeline = MultipleChoice::new(load_engine(&args.common, HeadKind::MultipleChoice, None)?);
    match args.prompt {
        Some(prompt) => {
            let input = ChoiceInput {
                prompt,
                choices: args.choices,
            };
            write_single(&args.common, pipeline.run(&input))
        }
        None => run_jsonl(
            &args.common,
            r#"{"prompt": ..., "choices": [...]}"#,
            |lines: &[ChoiceInput]| pipeline.run_batch(lines),
        ),
    }
}
