//! `deberta qa`: extractive question answering over contexts of any length (transformers
//! 4.57's question-answering pipeline).

use anyhow::Result;
use clap::Args;
use deberta::HeadKind;
use deberta_tasks::{QaInput, QaOptions, QuestionAnswering};

use super::task_common::{load_engine, run_jsonl, write_single, CommonArgs};

#[derive(Args)]
pub struct QaArgs {
    /// The question; with --context, one input; otherwise JSON lines
    /// `{"question": ..., "context": ...}` are read.
    #[arg(long, requires = "context")]
    question: Option<String>,
    /// The context.
    #[arg(long, requires = "question")]
    context: Option<String>,
    /// Answers to return.
    #[arg(long, default_value_t = 1)]
    top_k: usize,
    /// Overlap of context windows in tokens (default min(max_seq_len / 2, 128)).
    #[arg(long)]
    doc_stride: Option<usize>,
    /// Longest answer in tokens.
    #[arg(long, default_value_t = 15)]
    max_answer_len: usize,
    /// Window length in tokens, question included (default min(model_max_length, 384)).
    #[arg(long)]
    max_seq_len: Option<usize>,
    /// Accepted for compatibility; unused with a fast tokenizer, as in transformers.
    #[arg(long, default_value_t = 64)]
    max_question_len: usize,
    /// Allow the empty answer.
    #[arg(long)]
    handle_impossible_answer: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: QaArgs) -> Result<()> {
    let options = QaOptions {
        top_k: args.top_k,
        doc_stride: args.doc_stride,
        max_answer_len: args.max_answer_len,
        max_seq_len: args.max_seq_len,
        max_question_len: args.max_question_len,
        handle_impossible_answer: args.handle_impossible_answer,
        align_to_words: true,
    };
    let pipeline = QuestionAnswering::new(load_engine(
        &args.common,
        HeadKind::QuestionAnswering,
        None,
    )?);
    match (args.question, args.context) {
        (Some(question), Some(context)) => write_single(
            &args.common,
            pipeline.run(&QaInput { question, context }, &options),
        ),
        _ => run_jsonl(
            &args.common,
            r#"{"question": ..., "context": ...}"#,
            |lines: &[QaInput]| pipeline.run_batch(lines, &options),
        ),
    }
}
