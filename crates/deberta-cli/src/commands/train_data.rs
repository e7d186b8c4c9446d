//! `deberta train --train FILE`: the JSON-lines data formats (filled in with the data module).

use anyhow::{bail, Result};
use candle_core::Device;
use deberta_train::{TrainOptions, Trainer};

use super::train::TrainArgs;

pub fn data_trainer(
    _args: &TrainArgs,
    _options: TrainOptions,
    _device: &Device,
) -> Result<Trainer> {
    bail!("--train is not wired yet")
}
