//! Loading models from a checkpoint directory (`config.json` + weights), as
//! `DebertaV2PreTrainedModel.from_pretrained` does.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use candle_core::Device;

use crate::config::DebertaV2Config;
use crate::model::DebertaV2Model;
use crate::weights::{Checkpoint, LoadReport, Weights};
use crate::{Error, Result};

/// transformers' `base_model_prefix`.
pub const BASE_MODEL_PREFIX: &str = "deberta";

/// Reads `config.json` from a checkpoint directory.
pub fn load_config(dir: impl AsRef<Path>) -> Result<DebertaV2Config> {
    let dir = dir.as_ref();
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            what: "no config.json".into(),
        });
    }
    DebertaV2Config::from_file(path)
}

/// Where the backbone's tensors live: under `deberta.` (head checkpoints) or at the root (a bare
/// `DebertaV2Model` save).
pub fn backbone_prefix(checkpoint: &Checkpoint) -> &'static str {
    if checkpoint.has_prefix("deberta.") {
        BASE_MODEL_PREFIX
    } else {
        ""
    }
}

/// transformers' `_keys_to_ignore_on_load_unexpected` for every DeBERTa-v2 class.
pub fn ignored_by_all(name: &str) -> bool {
    name.contains("position_embeddings")
}

/// Builds a model with `build` over a checkpoint, then sorts what it left unused.
pub fn load_with<T>(
    checkpoint: &Checkpoint,
    config: &DebertaV2Config,
    device: &Device,
    is_ignored: impl Fn(&str) -> bool,
    build: impl FnOnce(&Weights, &DebertaV2Config) -> Result<(T, Vec<String>)>,
) -> Result<(T, LoadReport)> {
    let used = RefCell::new(BTreeSet::new());
    let weights = Weights::new(checkpoint, &used, device);
    let (model, initialized) = build(&weights, config)?;
    let report = LoadReport::build(checkpoint, &used.borrow(), initialized, is_ignored);
    Ok((model, report))
}

impl DebertaV2Model {
    /// Loads the backbone from a checkpoint directory saved by any DeBERTa-v2 class.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let config = load_config(&dir)?;
        let checkpoint = Checkpoint::from_dir(&dir)?;
        Self::from_checkpoint(&checkpoint, &config, device)
    }

    /// Loads the backbone from an opened checkpoint.
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        config: &DebertaV2Config,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let prefix = backbone_prefix(checkpoint);
        load_with(checkpoint, config, device, ignored_by_all, |w, cfg| {
            Ok((DebertaV2Model::load(&w.pp(prefix), cfg)?, Vec::new()))
        })
    }
}
