//! `deberta bench`: time the forward pass of a checkpoint on random ids with a full mask and
//! print one JSON object (median/min/max ms, tokens/s, peak RSS, settings); with `--mixed`,
//! a workload of mixed lengths run unpadded and padded ([`super::bench_mixed`]).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use deberta::{ForwardOptions, HeadKind, Labels, LinearFormat, ModelInput, TaskModel};

#[derive(Args)]
pub struct BenchArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Sequences per batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = super::parse_threads)]
    threads: Option<usize>,
    /// Compute type of the encoder's linear layers: f32, bf16 (weights and inputs rounded to
    /// bf16, f32 sums) or int8 (dynamic quantisation).
    #[arg(long, default_value = "f32", value_parser = LinearFormat::NAMES)]
    dtype: String,
    /// Model class; auto follows config.json's `architectures`.
    #[arg(long, default_value = "auto")]
    head: String,
    /// A workload of mixed lengths MIN-MAX (e.g. 8-256) instead of `--seq`: each batch's
    /// sequences get lengths drawn from the range, and the batch runs both unpadded (each
    /// sequence at its own length) and padded to its longest; both timings are reported.
    #[arg(long, value_parser = super::bench_mixed::parse_range)]
    mixed: Option<(usize, usize)>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(t) = args.threads {
        // candle's CPU kernels size their thread pools from RAYON_NUM_THREADS.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    if args.batch == 0 || args.seq == 0 || args.iters == 0 {
        bail!("--batch, --seq and --iters must be at least 1");
    }
    let device = Device::Cpu;
    let kind = match args.head.as_str() {
        "auto" => None,
        name => Some(name.parse::<HeadKind>()?),
    };
    let format: LinearFormat = args.dtype.parse()?;
    let load = super::kernel_env::load_options(format)?;
    let model = TaskModel::from_pretrained_with(&args.model, kind, &device, load)
        .with_context(|| format!("loading {}", args.model.display()))?;
    // Checked before the random ids are made: `--batch`/`--seq` may be anything.
    let rows = match model.kind() {
        HeadKind::MultipleChoice => args.batch.saturating_mul(2),
        _ => args.batch,
    };
    if let Some(range) = args.mixed {
        let mut report =
            super::bench_mixed::run(&model, range, args.batch, (args.warmup, args.iters))?;
        if let Some(fields) = report.as_object_mut() {
            fields.extend(settings(&model, &args));
        }
        println!("{report}");
        return Ok(());
    }
    deberta::limits::check_forward(model.config(), rows, args.seq)?;
    let input = random_input(&model, &args, &device)?;
    for _ in 0..args.warmup {
        model.forward(&input, Labels::default(), ForwardOptions::default())?;
    }
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let start = Instant::now();
        model.forward(&input, Labels::default(), ForwardOptions::default())?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let median = median_of(&mut times);
    let mut report = serde_json::json!({
        "median_ms": median,
        "min_ms": times.first(),
        "max_ms": times.last(),
        "tokens_per_s": (args.batch * args.seq) as f64 / (median / 1e3),
        "times_ms": times,
        "seq": args.seq,
    });
    if let Some(fields) = report.as_object_mut() {
        fields.extend(settings(&model, &args));
    }
    println!("{report}");
    Ok(())
}

/// The run's settings and plan, as JSON fields.
fn settings(model: &TaskModel, args: &BenchArgs) -> serde_json::Map<String, serde_json::Value> {
    let report = serde_json::json!({
        "peak_rss_mib": peak_rss_mib(),
        "model": args.model,
        "head": model.kind().cli_name(),
        "batch": args.batch,
        "warmup": args.warmup,
        "iters": args.iters,
        "threads": args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        "dtype": args.dtype,
        "path": model.plan().path_name(),
        "linear_kernel": model.plan().linear_kernel(),
        "plan": model.plan().to_string(),
        "kernel_tuning": model.kernel_tuning().ok().flatten().map(|t| t.to_json()),
    });
    match report {
        serde_json::Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    }
}

/// Ids uniform in `[4, vocab)` (past the special tokens), full attention mask; `[B, C, L]` with
/// two choices for multiple choice.
fn random_input(model: &TaskModel, args: &BenchArgs, device: &Device) -> Result<ModelInput> {
    let vocab = model.config().vocab_size as f64;
    let shape: Vec<usize> = match model.kind() {
        HeadKind::MultipleChoice => vec![args.batch, 2, args.seq],
        _ => vec![args.batch, args.seq],
    };
    let ids = Tensor::rand(4f64.min(vocab - 1.0), vocab, shape.as_slice(), device)?
        .floor()?
        .to_dtype(DType::U32)?;
    let mask = Tensor::ones(shape.as_slice(), DType::U32, device)?;
    Ok(ModelInput::from_ids(ids).with_attention_mask(mask))
}

/// Sorts `times` and returns their median.
pub(super) fn median_of(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    let sorted = &*times;
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Peak resident set size (VmHWM) from /proc, where it exists.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
