//! Loading the model a run trains: a checkpoint (any head; a new label set resizes and
//! re-initialises the classifier, as transformers' `ignore_mismatched_sizes`), or a model
//! built from `config.json` alone (`--from-scratch`, for pretraining). New parameters are
//! initialised from the run's seed.

use std::path::Path;

use candle_core::Device;
use deberta::pretrained::load_config;
use deberta::{Checkpoint, HeadKind, LoadOptions, ProblemType, TaskModel};

use crate::init::reinitialise_new_parameters;
use crate::Result;

/// A label set to write into the config (`id2label`, `label2id`, `num_labels`,
/// `problem_type`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewLabels {
    pub names: Vec<String>,
    pub problem_type: ProblemType,
}

/// What to load.
#[derive(Debug, Clone)]
pub struct ModelSpec<'a> {
    pub dir: &'a Path,
    pub head: Option<HeadKind>,
    pub from_scratch: bool,
    pub labels: Option<NewLabels>,
    pub seed: u64,
}

/// Loads the model for training (f32, the candle path; the trainer switches it to training
/// mode).
pub fn load_model(spec: &ModelSpec, device: &Device) -> Result<TaskModel> {
    let mut config = load_config(spec.dir)?;
    let before = config.num_labels();
    if let Some(labels) = &spec.labels {
        apply_labels(&mut config, labels);
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

/// Writes a label set into a config as transformers' `PretrainedConfig` holds it.
pub fn apply_labels(config: &mut deberta::DebertaV2Config, labels: &NewLabels) {
    let id2label = labels
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n.clone()))
        .collect();
    let label2id = labels
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as i64))
        .collect();
    config.id2label = Some(id2label);
    config.label2id = Some(label2id);
    config.num_labels_field = Some(labels.names.len());
    config.problem_type = Some(labels.problem_type);
}
