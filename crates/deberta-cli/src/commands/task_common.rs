//! What the task subcommands share: model loading (directory or hub id, device, threads,
//! batch settings), JSONL jobs (through [`crate::jsonl`]), single-input JSON output.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use deberta::{HeadKind, LinearFormat};
use deberta_tasks::{resolve_model, Engine, EngineOptions};
use deberta_tokenizer::Tokenizer;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::jsonl;

/// Flags every task command takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Checkpoint directory, or a hub id (`org/name[@revision]`) looked up in the HuggingFace
    /// cache (HF_HOME / HF_HUB_CACHE) and downloaded unless HF_HUB_OFFLINE is set. Default for
    /// `classify` and `fill-mask`: the model of that task shipped in the repository's `models/`.
    #[arg(long, env = "DEBERTA_MODEL")]
    pub model: Option<String>,
    /// Tokenizer directory (default: the model's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// JSON lines to process (`-` = stdin); read from stdin when no input is given as arguments.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Where to write the JSON (lines); default stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Inputs per forward pass (inputs are sorted by length and padded per batch).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Truncate inputs to this many tokens (QA: the default window length; NER and zero-shot:
    /// instead of the tokenizer's model_max_length).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// CPU worker threads (default: all cores).
    #[arg(long, value_parser = super::parse_threads)]
    pub threads: Option<usize>,
    /// cpu, cuda, cuda:N or metal (cuda / metal need a build with that feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute type of the encoder's linear layers (CPU): f32, bf16 (weights and inputs
    /// rounded to bf16, f32 sums) or int8 (dynamic quantisation).
    #[arg(long, default_value = "f32", value_parser = LinearFormat::NAMES)]
    pub dtype: String,
    /// Print the execution plan (path, kernels, threads) on stderr.
    #[arg(long)]
    pub verbose: bool,
}

fn device(name: &str) -> Result<Device> {
    Ok(match name.split_once(':') {
        None if name == "cpu" => Device::Cpu,
        None if name == "cuda" => Device::new_cuda(0)?,
        None if name == "metal" => Device::new_metal(0)?,
        Some(("cuda", n)) => Device::new_cuda(n.parse().context("--device cuda:N")?)?,
        Some(("metal", n)) => Device::new_metal(n.parse().context("--device metal:N")?)?,
        _ => bail!("unknown --device `{name}` (cpu, cuda, cuda:N, metal)"),
    })
}

/// The shipped models (`models/<name>` in the repository) task commands default to.
pub const SHIPPED_SENTIMENT: &str = "deberta-v3-tiny-sentiment";
pub const SHIPPED_MLM: &str = "deberta-v3-tiny-en";

/// `--model`, else the shipped model `shipped` (under `models/` of the working directory, then
/// of the checkout this binary was built from), else an error asking for `--model`.
pub fn model_spec(args: &CommonArgs, shipped: Option<&str>) -> Result<String> {
    if let Some(m) = &args.model {
        return Ok(m.clone());
    }
    let Some(name) = shipped else {
        bail!("--model is required (no model of this task ships with deberta)");
    };
    let candidates = [
        PathBuf::from("models").join(name),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(name),
    ];
    match candidates.iter().find(|p| p.join("config.json").is_file()) {
        Some(p) => Ok(p.display().to_string()),
        None => bail!(
            "--model is required: the shipped model {name} is not in ./models or in {}",
            candidates[1].display()
        ),
    }
}

/// Loads the model with the `head` and its tokenizer as the flags say (`shipped`: the default
/// model of the command, see [`model_spec`]).
pub fn load_engine(args: &CommonArgs, head: HeadKind, shipped: Option<&str>) -> Result<Engine> {
    if let Some(t) = args.threads {
        // candle's CPU kernels size their thread pools from RAYON_NUM_THREADS.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let dir = resolve_model(&model_spec(args, shipped)?)?;
    let tokenizer_dir = args.tokenizer.clone().unwrap_or_else(|| dir.clone());
    let tokenizer = Tokenizer::from_dir(&tokenizer_dir)
        .with_context(|| format!("loading the tokenizer from {}", tokenizer_dir.display()))?;
    let load = super::kernel_env::load_options(args.dtype.parse()?)?;
    let engine = Engine::with_load_options(&dir, tokenizer, head, &device(&args.device)?, load)
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    if args.verbose {
        eprintln!("plan: {}", engine.plan());
        super::print_kernel_tuning(engine.model())?;
    }
    Ok(engine.with_options(EngineOptions {
        batch_size: args.batch_size,
        max_length: args.max_length,
        ..Default::default()
    }))
}

fn output(args: &CommonArgs) -> Result<Box<dyn Write>> {
    Ok(match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

/// Writes the result of the single input given as arguments.
pub fn write_single<R: Serialize>(
    args: &CommonArgs,
    result: deberta_tasks::Result<R>,
) -> Result<()> {
    let value = result?;
    let mut out = output(args)?;
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Reads JSON lines (`--input` or stdin) through the CLI's JSONL driver ([`crate::jsonl`]):
/// `process` runs on chunks of parsed lines, one output line per input line in order (the
/// result, or `{"line": n, "error": ...}`), flushed per chunk; fails at the end, naming the
/// lines, when any line failed. `shape` is the expected line, for the malformed-JSON error.
pub fn run_jsonl<T, R>(
    args: &CommonArgs,
    shape: &str,
    process: impl Fn(&[T]) -> Vec<deberta_tasks::Result<R>>,
) -> Result<()>
where
    T: DeserializeOwned,
    R: Serialize,
{
    let (reader, total) = jsonl::open_input(args.input.as_deref())?;
    let opts = jsonl::Options {
        chunk: args.batch_size.max(1) * 16,
        shape,
        total,
    };
    jsonl::run(reader, output(args)?, &opts, process)?.into_result()
}
