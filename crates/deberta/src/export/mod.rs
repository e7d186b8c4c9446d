//! Writing checkpoint directories in each of transformers' weight formats, and converting
//! between them (`deberta convert`).
//!
//! A conversion loads the model class named by `config.json` exactly as a forward pass would,
//! and writes the weights it holds: what transformers' `from_pretrained` + `save_pretrained`
//! would write, so the result loads with no missing or unexpected keys. Tensors transformers
//! ignores on load (`mask_predictions.*`, unused absolute positions) are dropped.

pub mod keras;
pub mod pytorch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::config::DebertaV2Config;
use crate::heads::{HeadKind, TaskModel};
use crate::pretrained::load_config;
use crate::weights::{Checkpoint, LoadReport, WeightFormat};
use crate::{Error, Result};

/// Files copied next to the weights when present (tokenizer and its config).
pub const SIDE_FILES: [&str; 5] = [
    "spm.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

/// The weights file a format is saved as.
pub fn weights_file_name(format: WeightFormat) -> &'static str {
    match format {
        WeightFormat::Safetensors => "model.safetensors",
        WeightFormat::PyTorch => "pytorch_model.bin",
        WeightFormat::Tf => "tf_model.h5",
    }
}

/// Writes `state` (as a loaded model holds it) into `dir` (created if needed) in `format`;
/// returns the file. Nothing is created when TF cannot hold the weights.
pub fn save_weights(
    state: &BTreeMap<String, Tensor>,
    config: &DebertaV2Config,
    kind: HeadKind,
    format: WeightFormat,
    dir: &Path,
) -> Result<PathBuf> {
    let path = dir.join(weights_file_name(format));
    let layers = match format {
        WeightFormat::Tf => Some(keras::to_layers(state, config, kind)?),
        _ => None,
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    refuse_shadowing(dir, format)?;
    write_atomic(&path, |temp| match (format, &layers) {
        (_, Some(layers)) => crate::tf::h5::write(temp, layers),
        (WeightFormat::Safetensors, None) => {
            let tensors: HashMap<String, Tensor> =
                state.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let bytes =
                safetensors::serialize(&tensors, None).map_err(|e| Error::weight_file(&path, e))?;
            std::fs::write(temp, bytes).map_err(|e| Error::io(temp, e))
        }
        (_, None) => pytorch::save(state, temp),
    })?;
    Ok(path)
}

/// Fails when `dir` holds a weights file that a load would pick before the `format` file about
/// to be written there (transformers' order: safetensors, PyTorch, TF), naming it: the next
/// load must read what was just written.
pub fn refuse_shadowing(dir: &Path, format: WeightFormat) -> Result<()> {
    let written = weights_file_name(format);
    let shadowing: Vec<&str> = crate::weights::CANDIDATES
        .iter()
        .map(|c| c.0)
        .take_while(|&name| name != written)
        .filter(|name| dir.join(name).is_file())
        .collect();
    if shadowing.is_empty() {
        return Ok(());
    }
    Err(Error::MissingFile {
        dir: dir.to_path_buf(),
        what: format!(
            "already holds {}, which a later load would pick instead of the {written} being \
             written; remove {} or choose another output directory",
            shadowing.join(", "),
            if shadowing.len() == 1 { "it" } else { "them" }
        ),
    })
}

/// Writes `path` through a temporary file in the same directory (`.<name>.partial`): `write`
/// creates it (with the usual mode, following the umask), then it is synced and renamed over
/// `path`, so a crash or a full disk never leaves a truncated file under the final name. The
/// temporary file is removed on failure; one left by a killed process is replaced next time.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.partial"));
    // A leftover of an earlier, killed write.
    let _ = std::fs::remove_file(&temp);
    let result = write(&temp).and_then(|()| {
        std::fs::File::open(&temp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| Error::io(path, e))?;
        // Persist the rename itself (best effort: not every platform opens directories).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// What a conversion read and wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The model class the weights were loaded as.
    pub kind: HeadKind,
    /// The source load (files read, tensors dropped or initialised).
    pub report: LoadReport,
    /// The weights file written.
    pub weights: PathBuf,
    /// Every file written or copied into the output directory.
    pub files: Vec<PathBuf>,
}

/// Loads the checkpoint in `src` (choosing the format as [`Checkpoint::from_dir`] does, or
/// `from`) and writes it to `dst` in `to`, with `config.json` and the tokenizer files.
pub fn convert(
    src: &Path,
    dst: &Path,
    to: WeightFormat,
    from: Option<WeightFormat>,
) -> Result<Converted> {
    let config = load_config(src)?;
    let checkpoint = Checkpoint::open_dir(src, from)?;
    if same_dir(src, dst) {
        return Err(Error::input(format!(
            "the output directory {} is the source directory; choose another",
            dst.display()
        )));
    }
    let model = TaskModel::from_checkpoint(&checkpoint, config, None, &Device::Cpu)?;
    let kind = model.kind();
    let out_config = model.saved_config();
    refuse_shadowing(dst, to)?;
    let weights = save_weights(&model.state_dict(), &out_config, kind, to, dst)?;
    out_config.save(dst)?;
    let mut files = vec![weights.clone(), dst.join("config.json")];
    files.extend(copy_side_files(src, dst)?);
    Ok(Converted {
        kind,
        report: model.report().clone(),
        weights,
        files,
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies the tokenizer files of `src` that exist into `dst`.
pub fn copy_side_files(src: &Path, dst: &Path) -> Result<Vec<PathBuf>> {
    let mut copied = Vec::new();
    for name in SIDE_FILES {
        let from = src.join(name);
        if from.is_file() {
            let to = dst.join(name);
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            copied.push(to);
        }
    }
    Ok(copied)
}
