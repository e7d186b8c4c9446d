//! `deberta tokenize`: JSON lines `{"text": ..., "text_pair": ...}` on stdin, one JSON line of
//! ids, type ids, masks, tokens, character offsets, decode and overflow windows per input.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use deberta_tokenizer::{
    run_tokenize_jsonl, Impl, PaddingMode, TokenizeOptions, TruncationStrategy,
};

#[derive(Args)]
pub struct TokenizeArgs {
    /// Checkpoint directory with tokenizer.json and/or spm.model (+ tokenizer_config.json).
    #[arg(long)]
    model: PathBuf,
    /// slow = pure-Rust sentencepiece (spm.model), fast = tokenizer.json; default: fast when
    /// tokenizer.json exists.
    #[arg(long = "impl", value_parser = ["slow", "fast"])]
    implementation: Option<String>,
    /// Maximum length including special tokens (truncates with longest_first unless
    /// --truncation says otherwise, as transformers does).
    #[arg(long)]
    max_length: Option<usize>,
    /// Truncation strategy.
    #[arg(long, value_parser = ["longest_first", "only_first", "only_second"])]
    truncation: Option<String>,
    /// Overlap of the overflow windows.
    #[arg(long, default_value_t = 0)]
    stride: usize,
    /// Padding.
    #[arg(long, value_parser = ["longest", "max_length"])]
    padding: Option<String>,
}

pub fn run(args: TokenizeArgs) -> Result<()> {
    let implementation = match args.implementation.as_deref() {
        Some(name) => name.parse::<Impl>()?,
        None => Impl::Auto,
    };
    let truncation = match (&args.truncation, args.max_length) {
        (Some(s), _) => Some(s.parse::<TruncationStrategy>()?),
        (None, Some(_)) => Some(TruncationStrategy::LongestFirst),
        (None, None) => None,
    };
    let padding = match args.padding.as_deref() {
        Some(p) => p.parse::<PaddingMode>()?,
        None => PaddingMode::None,
    };
    let opts = TokenizeOptions {
        implementation,
        max_length: args.max_length,
        truncation,
        stride: args.stride,
        padding,
        add_special_tokens: true,
    };
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    let summary = run_tokenize_jsonl(&args.model, &opts, stdin, std::io::BufWriter::new(stdout))
        .with_context(|| format!("tokenizing with {}", args.model.display()))?;
    if summary.errors > 0 {
        bail!(
            "{} of {} lines failed (see their error objects)",
            summary.errors,
            summary.lines
        );
    }
    Ok(())
}
