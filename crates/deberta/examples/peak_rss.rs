//! Loads a checkpoint, runs one forward pass on `[batch, seq]` ones and prints the peak RSS.
//!
//! `cargo run --release -p deberta --example peak_rss -- DIR [batch] [seq]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use candle_core::{DType, Device, Tensor};
use deberta::{ForwardOptions, Labels, ModelInput, TaskModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).ok_or("usage: peak_rss DIR [batch] [seq]")?;
    let batch: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let seq: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;
    let model = TaskModel::from_pretrained(dir, None, &Device::Cpu)?;
    let after_load = vm("VmHWM");
    let ids = Tensor::ones((batch, seq), DType::U32, &Device::Cpu)?;
    model.forward(
        &ModelInput::from_ids(ids),
        Labels::default(),
        ForwardOptions::default(),
    )?;
    println!(
        "peak RSS after load {after_load:.0} MiB, after a {batch}x{seq} forward {:.0} MiB",
        vm("VmHWM")
    );
    Ok(())
}

fn vm(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_string))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
