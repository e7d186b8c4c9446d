//! The `deberta` command.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod commands;
mod json_input;
mod jsonl;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Run DeBERTa-v2/v3 checkpoints (HuggingFace layout) with transformers' numbers.
#[derive(Parser)]
#[command(name = "deberta", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Memory limit for one forward pass and for the model's weights (e.g. 8G, 512M): larger
    /// inputs, batches or configs end in an error instead of an allocation failure. Default:
    /// 80% of the smaller of physical memory and the address-space limit.
    #[arg(
        long,
        global = true,
        env = "DEBERTA_MAX_MEMORY",
        value_parser = commands::parse_max_memory
    )]
    max_memory: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one forward pass on JSON inputs and write every output tensor to safetensors.
    Forward(commands::forward::ForwardArgs),
    /// Convert a checkpoint directory between safetensors, PyTorch and TensorFlow weights.
    Convert(commands::convert::ConvertArgs),
    /// Tokenize JSON lines from stdin as transformers' DebertaV2Tokenizer(Fast) does.
    Tokenize(commands::tokenize::TokenizeArgs),
    /// Time the forward pass on random ids and print one JSON object.
    Bench(commands::bench::BenchArgs),
    /// Predict the [MASK] tokens of texts (transformers' fill-mask pipeline).
    FillMask(commands::fill_mask::FillMaskArgs),
    /// Classify texts or text pairs (transformers' text-classification pipeline).
    Classify(commands::classify::ClassifyArgs),
    /// Zero-shot classification with an NLI model (transformers' zero-shot-classification).
    ZeroShot(commands::zero_shot::ZeroShotArgs),
    /// Named entities / token classification (transformers' token-classification).
    Ner(commands::ner::NerArgs),
    /// Extractive question answering (transformers' question-answering).
    Qa(commands::qa::QaArgs),
    /// Multiple choice: score each choice for a prompt.
    Choice(commands::choice::ChoiceArgs),
    /// One training-mode forward + backward pass: the loss and every parameter's gradient.
    Grad(commands::grad::GradArgs),
    /// Fine-tune a head or pretrain with masked LM (transformers' Trainer semantics).
    Train(commands::train::TrainArgs),
    /// Serve the model over HTTP (TEI's routes plus every task), with batching.
    Serve(commands::serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEBERTA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc's malloc serves every block above its mmap threshold (128 KiB, raised only as such
/// blocks are freed) with a fresh `mmap` and gives it back with `munmap` on free, and trims the
/// heap top past 128 KiB of free space; a training step allocates and frees hundreds of
/// activation and gradient tensors of a few MiB each, so each would be paid again in page
/// faults and zeroed pages. Blocks up to 32 MiB (glibc's largest threshold) are kept in the
/// heap and reused instead, and freed memory stays mapped for the next step.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets malloc's tuning parameters; it is called before any other
    // thread exists and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn run(cli: Cli) -> Result<()> {
    deberta::limits::set_max_memory(cli.max_memory);
    match cli.command {
        Command::Forward(args) => commands::forward::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
        Command::FillMask(args) => commands::fill_mask::run(args),
        Command::Classify(args) => commands::classify::run(args),
        Command::ZeroShot(args) => commands::zero_shot::run(args),
        Command::Ner(args) => commands::ner::run(args),
        Command::Qa(args) => commands::qa::run(args),
        Command::Choice(args) => commands::choice::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Grad(args) => commands::grad::run(args),
        Command::Train(args) => commands::train::run(args),
    }
}
