//! Loading models from a checkpoint directory (`config.json` + weights), as
//! `DebertaV2PreTrainedModel.from_pretrained` does.

use std::path::Path;

use candle_core::Device;

use crate::config::DebertaV2Config;
use crate::model::DebertaV2Model;
use crate::params::Parameters;
use crate::plan::LoadOptions;
use crate::weights::{Checkpoint, LoadReport, LoadState, WeightFormat, Weights};
use crate::{Error, Result};

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

/// A model together with every parameter it holds, by transformers name, for training and
/// `save_pretrained`.
pub struct Loaded<T> {
    pub model: T,
    pub parameters: Parameters,
    pub report: LoadReport,
}

/// Builds a model with `build` over a checkpoint, then sorts what it left unused.
pub fn load_with<T>(
    checkpoint: &Checkpoint,
    config: &DebertaV2Config,
    (device, options): (&Device, LoadOptions),
    is_ignored: impl Fn(&str) -> bool,
    build: impl FnOnce(&Weights, &DebertaV2Config) -> Result<T>,
) -> Result<Loaded<T>> {
    let state = LoadState::with_options(options);
    let weights = Weights::new(checkpoint, &state, device);
    let model = build(&weights, config)?;
    let report = LoadReport::build(checkpoint, &state.used(), state.initialized(), is_ignored);
    Ok(Loaded {
        model,
        parameters: state.parameters(),
        report,
    })
}

impl DebertaV2Model {
    /// Loads the backbone from a checkpoint directory saved by any DeBERTa-v2 class.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        Self::from_pretrained_with(dir, device, LoadOptions::default())
    }

    /// [`Self::from_pretrained`] with a dtype and kernel options.
    pub fn from_pretrained_with(
        dir: impl AsRef<Path>,
        device: &Device,
        options: LoadOptions,
    ) -> Result<(Self, LoadReport)> {
        let config = load_config(&dir)?;
        let checkpoint = Checkpoint::from_dir(&dir)?;
        Self::from_checkpoint_with(&checkpoint, &config, device, options)
    }

    /// Loads the backbone from an opened checkpoint.
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        config: &DebertaV2Config,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        Self::from_checkpoint_with(checkpoint, config, device, LoadOptions::default())
    }

    /// [`Self::from_checkpoint`] with a dtype and kernel options.
    pub fn from_checkpoint_with(
        checkpoint: &Checkpoint,
        config: &DebertaV2Config,
        device: &Device,
        options: LoadOptions,
    ) -> Result<(Self, LoadReport)> {
        let loaded = load_with(
            checkpoint,
            config,
            (device, options),
            ignored_by_all,
            |w, cfg| DebertaV2Model::load(&w.backbone_saved_as(""), cfg),
        )?;
        Ok((loaded.model, loaded.report))
    }
}
