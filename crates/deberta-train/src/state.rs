//! Checkpoints: a transformers checkpoint directory (`config.json`, `model.safetensors`, the
//! tokenizer files of the source model) plus `training_state/` (`state.json`: step, data
//! position, dropout stream, options; `optimizer.safetensors`: AdamW's moments), from which
//! `--resume` continues bit for bit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use deberta::TaskModel;

use crate::options::TrainOptions;
use crate::schedule::Schedule;
use crate::{Error, Result};

/// The tokenizer files copied next to a checkpoint's weights when the source model has them.
pub const TOKENIZER_FILES: [&str; 6] = [
    "spm.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
];

const STATE_DIR: &str = "training_state";
const STATE_FILE: &str = "state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const FORMAT_VERSION: u32 = 1;

/// Where a run stands: everything besides the weights and the moments that a resume needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingState {
    pub format_version: u32,
    /// Optimiser steps taken.
    pub step: u64,
    /// Micro-batches consumed (the data position).
    pub micro_batches: u64,
    /// Dropout masks drawn (with `options.seed`, the dropout stream's position).
    pub dropout_calls: u64,
    pub schedule: Schedule,
    pub options: TrainOptions,
}

impl TrainingState {
    pub fn new(
        step: u64,
        micro_batches: u64,
        dropout_calls: u64,
        schedule: Schedule,
        options: TrainOptions,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            step,
            micro_batches,
            dropout_calls,
            schedule,
            options,
        }
    }
}

/// Writes a checkpoint into `dir`: weights and config as `save_pretrained`, the tokenizer files
/// found in `tokenizer_dir`, and the training state.
pub fn save_checkpoint(
    dir: &Path,
    model: &TaskModel,
    tokenizer_dir: Option<&Path>,
    state: &TrainingState,
    moments: &BTreeMap<String, Tensor>,
) -> Result<()> {
    model.save_pretrained(dir)?;
    if let Some(src) = tokenizer_dir {
        copy_tokenizer_files(src, dir)?;
    }
    let state_dir = dir.join(STATE_DIR);
    std::fs::create_dir_all(&state_dir).map_err(|e| io(&state_dir, e))?;
    let json = serde_json::to_string_pretty(state)
        .map_err(|e| Error::invalid(format!("serialising the training state: {e}")))?;
    write_atomic(&state_dir.join(STATE_FILE), json.as_bytes())?;
    let tensors: HashMap<String, Tensor> = moments.clone().into_iter().collect();
    let path = state_dir.join(OPTIMIZER_FILE);
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    Ok(())
}

/// Reads `dir/training_state`: the state and the optimiser moments.
pub fn load_training_state(dir: &Path) -> Result<(TrainingState, BTreeMap<String, Tensor>)> {
    let state_dir = dir.join(STATE_DIR);
    let path = state_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let state: TrainingState = serde_json::from_str(&text).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!("not a training state: {e}"),
    })?;
    if state.format_version != FORMAT_VERSION {
        return Err(Error::Data {
            path: path.display().to_string(),
            message: format!(
                "training state format {} (this build reads {FORMAT_VERSION})",
                state.format_version
            ),
        });
    }
    let path = state_dir.join(OPTIMIZER_FILE);
    let moments = candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!("cannot read the optimiser state: {e}"),
    })?;
    Ok((state, moments.into_iter().collect()))
}

/// Copies the tokenizer files of `src` that exist into `dst`.
pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<Vec<PathBuf>> {
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let from = src.join(name);
        if from.is_file() {
            let to = dst.join(name);
            if from != to {
                std::fs::copy(&from, &to).map_err(|e| io(&to, e))?;
            }
            copied.push(to);
        }
    }
    Ok(copied)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}
