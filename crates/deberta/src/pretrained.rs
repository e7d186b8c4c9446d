//! Loading models from a checkpoint directory (`config.json` + weights), as
//! `DebertaV2PreTrainedModel.from_pretrained` does.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;

use crate::config::DebertaV2Config;
use crate::model::DebertaV2Model;
use crate::weights::{Checkpoint, LoadReport, LoadState, WeightFormat, Weights};
use crate::{Error, Result};
use candle_core::Tensor;

/// transformers' `base_model_prefix`.
pub const BASE_MODEL_PREFIX: &str = "deberta";

/// Reads `config.json` from a checkpoint directory.
pub fn load_config(dir: impl AsRef<Path>) -> Result<DebertaV2Config> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            what: "not a directory".into(),
        });
    }
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            what: "no config.json".into(),
        });
    }
    DebertaV2Config::from_file(path)
}

/// Reads `config.json` and opens the weights of a checkpoint directory: the format transformers
/// would pick (safetensors, then PyTorch, then TF) when `format` is `None`, else that one. Load
/// a model from the result with `TaskModel::from_checkpoint` or `DebertaV2Model::from_checkpoint`.
pub fn open_pretrained(
    dir: impl AsRef<Path>,
    format: Option<WeightFormat>,
) -> Result<(DebertaV2Config, Checkpoint)> {
    let config = load_config(&dir)?;
    let checkpoint = Checkpoint::open_dir(dir.as_ref(), format)?;
    Ok((config, checkpoint))
}

/// transformers' `_keys_to_ignore_on_load_unexpected` for every DeBERTa-v2 class.
pub fn ignored_by_all(name: &str) -> bool {
    name.contains("position_embeddings")
}

/// A model together with every weight it holds, by transformers name, for `save_pretrained`.
pub struct Loaded<T> {
    pub model: T,
    pub state_dict: BTreeMap<String, Tensor>,
    pub report: LoadReport,
}

/// Builds a model with `build` over a checkpoint, then sorts what it left unused.
pub fn load_with<T>(
    checkpoint: &Checkpoint,
    config: &DebertaV2Config,
    device: &Device,
    is_ignored: impl Fn(&str) -> bool,
    build: impl FnOnce(&Weights, &DebertaV2Config) -> Result<T>,
) -> Result<Loaded<T>> {
    let state = LoadState::default();
    let weights = Weights::new(checkpoint, &state, device);
    let model = build(&weights, config)?;
    let report = LoadReport::build(checkpoint, &state.used(), state.initialized(), is_ignored);
    Ok(Loaded {
        model,
        state_dict: state.state_dict(),
        report,
    })
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
        let loaded = load_with(checkpoint, config, device, ignored_by_all, |w, cfg| {
            DebertaV2Model::load(&w.backbone_saved_as(""), cfg)
        })?;
        Ok((loaded.model, loaded.report))
    }
}
