//! `deberta forward`: one forward pass from a JSON file to a safetensors file of f32 tensors
//! named as transformers' output fields.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use deberta::pretrained::open_pretrained;
use deberta::{ForwardOptions, HeadKind, LinearFormat, TaskModel, TaskOutput};

use crate::json_input::ForwardInputs;

#[derive(Args)]
pub struct ForwardArgs {
    /// Checkpoint directory (config.json + model.safetensors / sharded index / pytorch_model.bin
    /// / tf_model.h5).
    #[arg(long)]
    model: PathBuf,
    /// Which weights file to read when there are several (default: safetensors, then pytorch,
    /// then tf, as transformers does).
    #[arg(long, value_parser = ["safetensors", "pytorch", "tf"])]
    weights: Option<String>,
    /// JSON object with input_ids and optional attention_mask, token_type_ids, position_ids,
    /// labels, start_positions, end_positions.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs (safetensors).
    #[arg(long)]
    output: PathBuf,
    /// Model class: auto follows config.json's `architectures`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "base", "masked-lm", "sequence-classification", "token-classification", "question-answering", "multiple-choice"])]
    head: String,
    /// Also write hidden_states.{0..=num_hidden_layers}.
    #[arg(long)]
    hidden_states: bool,
    /// Also write attentions.{0..num_hidden_layers}.
    #[arg(long)]
    attentions: bool,
    /// Compute type of the encoder's linear layers: f32, bf16 (weights and inputs rounded to
    /// bf16, f32 sums) or int8 (dynamic quantisation).
    #[arg(long, default_value = "f32", value_parser = LinearFormat::NAMES)]
    dtype: String,
    /// Print the execution plan (path, kernels, threads) on stderr.
    #[arg(long)]
    verbose: bool,
}

pub fn run(args: ForwardArgs) -> Result<()> {
    let device = Device::Cpu;
    let kind = match args.head.as_str() {
        "auto" => None,
        name => Some(name.parse::<HeadKind>()?),
    };
    let format = args.weights.as_deref().map(str::parse).transpose()?;
    let load = super::kernel_env::load_options(args.dtype.parse()?)?;
    let model = open_pretrained(&args.model, format)
        .and_then(|(config, checkpoint)| {
            TaskModel::from_checkpoint_with(&checkpoint, config, kind, &device, load)
        })
        .with_context(|| format!("loading {}", args.model.display()))?;
    if args.verbose {
        eprintln!("plan: {}", model.plan());
        super::print_kernel_tuning(&model)?;
    }
    let report = model.report();
    eprintln!(
        "{} from {}",
        model.kind().class_name(),
        report
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for name in &report.unexpected {
        eprintln!("warning: unused checkpoint tensor {name}");
    }
    for name in &report.initialized {
        eprintln!("warning: {name} is not in the checkpoint; newly initialised");
    }
    let inputs = ForwardInputs::from_file(&args.input, &device)?;
    let input = inputs.model_input();
    let labels = inputs.labels();
    let opts = ForwardOptions {
        output_hidden_states: args.hidden_states,
        output_attentions: args.attentions,
    };
    let out = model.forward(&input, labels, opts)?;
    let tensors = named_outputs(out)?;
    candle_core::safetensors::save(&tensors, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    eprintln!(
        "wrote {} tensors to {}: {names:?}",
        names.len(),
        args.output.display()
    );
    Ok(())
}

/// Output fields as f32 tensors named as transformers names them (`loss` as shape `[1]`).
fn named_outputs(out: TaskOutput) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    let fields = [
        ("last_hidden_state", out.last_hidden_state),
        ("logits", out.logits),
        ("start_logits", out.start_logits),
        ("end_logits", out.end_logits),
        ("loss", out.loss.map(|l| l.reshape(1)).transpose()?),
    ];
    for (name, tensor) in fields {
        if let Some(t) = tensor {
            tensors.insert(name.to_string(), t.to_dtype(DType::F32)?);
        }
    }
    for (prefix, list) in [
        ("hidden_states", out.hidden_states),
        ("attentions", out.attentions),
    ] {
        for (i, t) in list.into_iter().flatten().enumerate() {
            tensors.insert(format!("{prefix}.{i}"), t.to_dtype(DType::F32)?);
        }
    }
    Ok(tensors)
}
