//! `deberta grad`: one training-mode forward and backward pass on JSON inputs with labels;
//! writes the loss and the gradient of every parameter under transformers' names.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use deberta::{DropoutRng, HeadKind, TaskModel};

use crate::json_input::ForwardInputs;

#[derive(Args)]
pub struct GradArgs {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// `deberta forward`'s JSON input, with `labels` (or `start_positions` / `end_positions`).
    #[arg(long)]
    input: PathBuf,
    /// Where to write `loss` ([1]) and `grad.<parameter name>` (safetensors, f32).
    #[arg(long)]
    output: PathBuf,
    /// Model class: auto follows config.json's `architectures`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "masked-lm", "sequence-classification", "token-classification", "question-answering", "multiple-choice"])]
    head: String,
    /// Seed of the dropout masks (the config's dropout probabilities apply).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(args: GradArgs) -> Result<()> {
    let device = Device::Cpu;
    let kind = match args.head.as_str() {
        "auto" => None,
        name => Some(name.parse::<HeadKind>()?),
    };
    let mut model = TaskModel::from_pretrained(&args.model, kind, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    for name in &model.report().initialized {
        eprintln!("warning: {name} is not in the checkpoint; newly initialised");
    }
    model.train(DropoutRng::new(args.seed))?;
    let inputs = ForwardInputs::from_file(&args.input, &device)?;
    let grads = deberta_train::gradients(&model, &inputs.model_input(), inputs.labels())
        .with_context(|| format!("computing gradients for {}", args.input.display()))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("loss".into(), grads.loss.reshape(1)?.to_dtype(DType::F32)?);
    for (name, g) in &grads.grads {
        tensors.insert(format!("grad.{name}"), g.to_dtype(DType::F32)?);
    }
    candle_core::safetensors::save(&tensors, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "loss {:.6}; wrote {} gradients to {}",
        grads.loss_value()?,
        grads.grads.len(),
        args.output.display()
    );
    Ok(())
}
