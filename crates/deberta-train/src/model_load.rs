//! Loading the model a run trains: a checkpoint (any head; a new label set resizes and
//! re-initialises the classifier, as transformers' `ignore_mismatched_sizes`), or a model
//! built from `config.json` alone (`--from-scratch`, for pretraining). New parameters are
//! initialised from the run's seed.

use std::path::Path;

use candle_core::Device;
use deberta::pretrained::load_config;
use deberta::{Checkpoint, HeadKind, LoadOptions, TaskModel};

use crate::data::{apply_label_set, LabelSet};

use crate::init::reinitialise_new_parameters;
use crate::Result;

/// What to load.
#[derive(Debug, Clone)]
pub struct ModelSpec<'a> {
    pub dir: &'a Path,
    pub head: Option<HeadKind>,
    pub from_scratch: bool,
    pub labels: Option<LabelSet>,
    pub seed: u64,
}

/// Loads the model for training (f32, the candle path; the trainer switches it to training
/// mode).
pub fn load_model(spec: &ModelSpec, device: &Device) -> Result<TaskModel> {
    let mut config = load_config(spec.dir)?;
    let before = config.num_labels();
    if let Some(labels) = &spec.labels {
        apply_label_set(&mut config, labels);
    }
    let mut checkpoint = if spec.from_scratch {
        Checkpoint::empty_for_init(config.initializer_range)
    } else {
        Checkpoint::from_dir(spec.dir)?
    };
    if config.num_labels() != before {
        let dropped = checkpoint.forget_prefix("classifier.");
        if !dropped.is_empty() {
            tracing::warn!(
                from = before,
                to = config.num_labels(),
                "the label count changed: the classifier is newly initialised"
            );
        }
    }
    let model = TaskModel::from_checkpoint_with(
        &checkpoint,
        config,
        spec.head,
        device,
        LoadOptions::default(),
    )?;
    reinitialise_new_parameters(&model, spec.seed)?;
    Ok(model)
}
