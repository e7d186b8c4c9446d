//! The `deberta` command.

mod commands;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Run DeBERTa-v2/v3 checkpoints (HuggingFace layout) with transformers' numbers.
#[derive(Parser)]
#[command(name = "deberta", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

fn main() -> std::process::ExitCode {
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Forward(args) => commands::forward::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Tokenize(args) => commands::tokenize::run(args),
    }
}
