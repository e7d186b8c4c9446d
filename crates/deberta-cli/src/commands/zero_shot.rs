//! `deberta zero-shot`: zero-shot classification with an NLI model (transformers'
//! zero-shot-classification).

use anyhow::Result;
use clap::Args;
use deberta::HeadKind;
use deberta_tasks::{CandidateLabels, ZeroShot, ZeroShotInput, ZeroShotOptions};

use super::task_common::{load_engine, run_jsonl, write_single, CommonArgs};

#[derive(Args)]
pub struct ZeroShotArgs {
    /// The text; without it, JSON lines `{"text": ..., "candidate_labels": [...]}` are read
    /// (labels optional per line).
    text: Option<String>,
    /// Candidate labels, comma-separated (or repeat the flag).
    #[arg(long = "labels", value_delimiter = ',')]
    candidate_labels: Vec<String>,
    /// The hypothesis; `{}` is replaced by each label.
    #[arg(long, default_value = "This example is {}.")]
    hypothesis_template: String,
    /// Score labels independently (entailment vs contradiction).
    #[arg(long)]
    multi_label: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: ZeroShotArgs) -> Result<()> {
    // As transformers splits a label string: on commas, trimmed, empties dropped.
    let labels = CandidateLabels::Joined(args.candidate_labels.join(",")).labels();
    if !args.candidate_labels.is_empty() && labels.is_empty() {
        anyhow::bail!(
            "--labels {:?} holds no label (labels are comma-separated; empty ones are dropped)",
            args.candidate_labels.join(",")
        );
    }
    let options = ZeroShotOptions {
        candidate_labels: labels,
        hypothesis_template: args.hypothesis_template.clone(),
        multi_label: args.multi_label,
    };
    let pipeline = ZeroShot::new(load_engine(
        &args.common,
        HeadKind::SequenceClassification,
        None,
    )?);
    match args.text {
        Some(text) => {
            let input = ZeroShotInput {
                text,
                candidate_labels: None,
            };
            write_single(&args.common, pipeline.run(&input, &options))
        }
        None => run_jsonl(
            &args.common,
            r#"{"text": ..., "candidate_labels": [...]}"#,
            |lines: &[ZeroShotInput]| pipeline.run_batch(lines, &options),
        ),
    }
}
