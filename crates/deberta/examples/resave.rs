//! Loads a checkpoint directory as a head and writes it back with `save_pretrained`.
//! Used by `scripts/gen_fixtures.py` to check that transformers loads what we save.
//!
//! `cargo run -p deberta --example resave -- SRC_DIR DST_DIR [head]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use candle_core::Device;
use deberta::{HeadKind, TaskModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(src), Some(dst)) = (args.get(1), args.get(2)) else {
        return Err("usage: resave SRC_DIR DST_DIR [head]".into());
    };
    let kind = args.get(3).map(|k| k.parse::<HeadKind>()).transpose()?;
    let model = TaskModel::from_pretrained(src, kind, &Device::Cpu)?;
    model.save_pretrained(dst)?;
    println!("{} -> {dst} ({})", src, model.kind().class_name());
    Ok(())
}
