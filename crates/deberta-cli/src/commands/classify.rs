//! `deberta classify`: text classification of texts or text pairs (transformers'
//! text-classification).

use anyhow::Result;
use clap::Args;
use deberta::HeadKind;
use deberta_tasks::{ClassifyInput, ClassifyOptions, ScoreFunction, TextClassification, TopK};

use super::task_common::{load_engine, run_jsonl, write_single, CommonArgs};

#[derive(Args)]
pub struct ClassifyArgs {
    /// The text; without it, JSON lines `{"text": ..., "text_pair": ...}` are read.
    text: Option<String>,
    /// Second text of a pair.
    #[arg(long)]
    text_pair: Option<String>,
    /// Return the k best labels (`all` for every label); default: the best one in
    /// transformers' legacy shape.
    #[arg(long)]
    top_k: Option<String>,
    /// softmax, sigmoid or none; default: transformers' rule (problem_type / num_labels).
    #[arg(long)]
    function_to_apply: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: ClassifyArgs) -> Result<()> {
    let top_k = match args.top_k.as_deref() {
        None => TopK::Legacy,
        Some("all") => TopK::All,
        Some(k) => TopK::K(
            k.parse()
                .map_err(|_| anyhow::anyhow!("--top-k must be a number or `all`"))?,
        ),
    };
    let function_to_apply = args
        .function_to_apply
        .as_deref()
        .map(str::parse::<ScoreFunction>)
        .transpose()?;
    let options = ClassifyOptions {
        top_k,
        function_to_apply,
    };
    let pipeline = TextClassification::new(load_engine(
        &args.common,
        HeadKind::SequenceClassification,
        Some(super::task_common::SHIPPED_SENTIMENT),
    )?);
    match args.text {
        Some(text) => {
            let input = ClassifyInput {
                text,
                text_pair: args.text_pair,
            };
            write_single(&args.common, pipeline.run(&input, &options))
        }
        None => run_jsonl(
            &args.common,
            r#"{"text": ..., "text_pair": ...}"#,
            |lines: &[ClassifyInput]| pipeline.run_batch(lines, &options),
        ),
    }
}
