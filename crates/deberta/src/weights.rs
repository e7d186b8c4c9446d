//! Checkpoint directories as transformers writes them, and a weight view that records which
//! tensors the model read so that nothing in a checkpoint goes unnoticed.
//!
//! Formats: `model.safetensors` (memory-mapped), `model.safetensors.index.json` (sharded),
//! `pytorch_model.bin` (the zip/pickle format of `torch.save`), its sharded index, and
//! `tf_model.h5` (Keras weights of the TF classes, presented under PyTorch names and layouts by
//! [`crate::tf::TfWeights`]). Tensors stored as f16/bf16/f32/f64 are converted to f32.
//!
//! When a directory has several, the order is transformers': safetensors, then PyTorch, then
//! TF ([`Checkpoint::from_dir`]); [`Checkpoint::from_dir_as`] picks one format.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::mmap_safetensors::SafetensorsFile;
use crate::params::{Param, ParamVersion, Parameters};
use crate::plan::{KernelOptions, LoadOptions};
use crate::tf::TfWeights;
use crate::{Error, Result};

/// The on-disk format a checkpoint was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    Safetensors,
    PyTorch,
    /// `tf_model.h5` of transformers' TF classes.
    Tf,
}

impl WeightFormat {
    /// The CLI name: `safetensors`, `pytorch` or `tf`.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Safetensors => "safetensors",
            WeightFormat::PyTorch => "pytorch",
            WeightFormat::Tf => "tf",
        }
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "safetensors" => Ok(WeightFormat::Safetensors),
            "pytorch" | "pt" | "bin" => Ok(WeightFormat::PyTorch),
            "tf" | "tensorflow" | "h5" => Ok(WeightFormat::Tf),
            other => Err(Error::input(format!(
                "unknown weight format `{other}` (expected safetensors, pytorch or tf)"
            ))),
        }
    }
}

/// Where a tensor lives: which file, and the shape stored there.
#[derive(Debug, Clone)]
struct TensorEntry {
    file: usize,
    shape: Vec<usize>,
}

enum Reader {
    Safetensors(SafetensorsFile),
    PyTorch(crate::pth::PthFile),
    Tf(TfWeights),
}

/// An opened checkpoint: the weights file(s) and the inventory of tensor names in them.
pub struct Checkpoint {
    format: WeightFormat,
    files: Vec<(PathBuf, Reader)>,
    inventory: BTreeMap<String, TensorEntry>,
    /// `Some(initializer_range)`: every tensor the model needs and the checkpoint lacks is
    /// initialised as transformers' `_init_weights` does (a model built from its config).
    init_missing: Option<f64>,
}

/// Weight files in the order transformers prefers them.
pub(crate) const CANDIDATES: [(&str, WeightFormat, bool); 6] = [
    ("model.safetensors", WeightFormat::Safetensors, false),
    (
        "model.safetensors.index.json",
        WeightFormat::Safetensors,
        true,
    ),
    ("pytorch_model.bin", WeightFormat::PyTorch, false),
    ("pytorch_model.bin.index.json", WeightFormat::PyTorch, true),
    ("tf_model.h5", WeightFormat::Tf, false),
    ("tf_model.h5.index.json", WeightFormat::Tf, true),
];

impl Checkpoint {
    /// Opens the weights of a checkpoint directory, choosing the format as transformers does
    /// (safetensors, then PyTorch, then TF).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_dir(dir.as_ref(), None)
    }

    /// Opens the weights of a checkpoint directory in the given format only.
    pub fn from_dir_as(dir: impl AsRef<Path>, format: WeightFormat) -> Result<Self> {
        Self::open_dir(dir.as_ref(), Some(format))
    }

    /// [`Checkpoint::from_dir`] when `format` is `None`, else [`Checkpoint::from_dir_as`].
    pub fn open_dir(dir: &Path, format: Option<WeightFormat>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                what: "not a directory".into(),
            });
        }
        let wanted = CANDIDATES
            .iter()
            .filter(|c| format.is_none_or(|f| f == c.1));
        for &(name, format, sharded) in wanted.clone() {
            let path = dir.join(name);
            if path.is_file() {
                let files = if sharded {
                    shard_files(&path)?
                } else {
                    vec![path]
                };
                return Self::from_files(&files, format);
            }
        }
        let names: Vec<&str> = wanted.map(|c| c.0).collect();
        Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            what: format!("no weights file (looked for {})", names.join(", ")),
        })
    }

    /// Opens the given weight files (all of one format) as one checkpoint.
    pub fn from_files(paths: &[PathBuf], format: WeightFormat) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut inventory = BTreeMap::new();
        for (index, path) in paths.iter().enumerate() {
            let (reader, names) = open_file(path, format)?;
            for (name, shape) in names {
                inventory.insert(name, TensorEntry { file: index, shape });
            }
            files.push((path.clone(), reader));
        }
        tracing::info!(files = ?paths, tensors = inventory.len(), "opened checkpoint");
        Ok(Self {
            format,
            files,
            inventory,
            init_missing: None,
        })
    }

    /// A checkpoint with no tensors whose every parameter is initialised as transformers'
    /// `_init_weights` does: normal(0, `initializer_range`) for matrices, zeros for biases, ones
    /// for LayerNorm weights (a model built from `config.json` alone, for pretraining).
    pub fn empty_for_init(initializer_range: f64) -> Self {
        Self {
            format: WeightFormat::Safetensors,
            files: Vec::new(),
            inventory: BTreeMap::new(),
            init_missing: Some(initializer_range),
        }
    }

    /// Drops every tensor whose name starts with `prefix` from the inventory, so that the model
    /// initialises those parameters instead (a head whose label count changed, as transformers'
    /// `ignore_mismatched_sizes`). Returns the dropped names.
    pub fn forget_prefix(&mut self, prefix: &str) -> Vec<String> {
        let names: Vec<String> = self
            .inventory
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for name in &names {
            self.inventory.remove(name);
        }
        names
    }

    /// The format the weights were read from.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// The weight files, in shard order.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|(p, _)| p.as_path()).collect()
    }

    /// Every tensor name in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inventory.keys().map(String::as_str)
    }

    /// Whether the checkpoint has a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.inventory.contains_key(name)
    }

    /// Whether any tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.inventory
            .range(prefix.to_string()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(prefix))
    }

    /// The stored shape of a tensor.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.inventory.get(name).map(|e| e.shape.as_slice())
    }

    fn describe(&self) -> String {
        match self.files.as_slice() {
            [(p, _)] => p.display().to_string(),
            files => format!("{} shards starting with {}", files.len(), {
                files
                    .first()
                    .map(|(p, _)| p.display().to_string())
                    .unwrap_or_default()
            }),
        }
    }

    fn missing(&self, name: &str) -> Error {
        let mut source_desc = self.describe();
        if self.format == WeightFormat::Tf {
            if let Some((tf, _)) = crate::tf::pt_to_tf(name) {
                source_desc.push_str(&format!(" (TF weight `<model>/{tf}:0`)"));
            }
        }
        Error::MissingWeight {
            name: name.to_string(),
            source_desc,
        }
    }

    /// Loads one tensor as f32 on `device`, checking its shape.
    pub fn load(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let entry = self.inventory.get(name).ok_or_else(|| self.missing(name))?;
        let (path, reader) = self
            .files
            .get(entry.file)
            .ok_or_else(|| Error::internal(format!("no shard for `{name}`")))?;
        if let Reader::Tf(tf) = reader {
            let tensor = tf.load(name, shape, device)?;
            warn_non_finite(path, name, &tensor);
            return Ok(tensor);
        }
        if entry.shape != shape {
            return Err(Error::WeightShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                got: entry.shape.clone(),
            });
        }
        let tensor = match reader {
            Reader::Safetensors(st) => st.load(name, device),
            Reader::PyTorch(pth) => {
                let values = pth
                    .read_f32(name)
                    .map_err(|e| Error::weight_file(path, e))?;
                Tensor::from_vec(values, shape, device)
            }
            Reader::Tf(_) => Err(candle_core::Error::Msg("internal: TF read above".into())),
        }
        .map_err(|e| Error::weight_file_candle(path, &format!("tensor `{name}`"), &e))?;
        let tensor = to_f32(tensor)
            .map_err(|e| Error::weight_file_candle(path, &format!("tensor `{name}`"), &e))?;
        warn_non_finite(path, name, &tensor);
        Ok(tensor)
    }
}

/// Logs a warning naming a weight that holds NaN or infinite values: every output that depends
/// on it is NaN (a JSON `"score": null`), which is what the checkpoint computes.
fn warn_non_finite(path: &Path, name: &str, tensor: &Tensor) {
    // A NaN or infinite element makes the sum NaN or infinite (no copy of the tensor made).
    let finite = tensor
        .sum_all()
        .and_then(|s| s.to_scalar::<f32>())
        .map(|s| s.is_finite());
    if let Ok(false) = finite {
        tracing::warn!(
            tensor = name,
            file = %path.display(),
            "weight `{name}` holds NaN or infinite values; outputs that depend on it will be \
             NaN (null scores in JSON)"
        );
    }
}

fn to_f32(tensor: Tensor) -> candle_core::Result<Tensor> {
    match tensor.dtype() {
        DType::F32 => Ok(tensor),
        DType::F16 | DType::BF16 | DType::F64 => tensor.to_dtype(DType::F32),
        other => Err(candle_core::Error::Msg(format!(
            "stored as {other:?}; only floating-point weights are supported"
        ))),
    }
}

/// Reads a sharded index (`*.index.json`) and returns its shard paths in order.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: index.to_path_buf(),
        source: e,
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let unique: BTreeSet<&String> = parsed.weight_map.values().collect();
    if unique.is_empty() {
        return Err(Error::weight_file(index, "weight_map is empty"));
    }
    let mut out = Vec::new();
    for file in unique {
        if file.contains('/') || file.contains('\\') || file.contains("..") {
            return Err(Error::weight_file(
                index,
                format!("shard name `{file}` is not a plain file name"),
            ));
        }
        let path = dir.join(file);
        if !path.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                what: format!("shard `{file}` named in {} is missing", index.display()),
            });
        }
        out.push(path);
    }
    Ok(out)
}

type Names = Vec<(String, Vec<usize>)>;

fn open_file(path: &Path, format: WeightFormat) -> Result<(Reader, Names)> {
    match format {
        WeightFormat::Safetensors => {
            let st = SafetensorsFile::open(path)?;
            let names = st.names();
            Ok((Reader::Safetensors(st), names))
        }
        WeightFormat::PyTorch => {
            let pth = crate::pth::PthFile::open(path).map_err(|e| {
                Error::weight_file(path, format!("not a valid PyTorch checkpoint: {e}"))
            })?;
            // Dimensions were checked against the storage's zip entry, so they fit usize.
            let names = pth
                .tensors()
                .map(|(name, info)| {
                    let dims = info.shape.iter().map(|&d| d as usize).collect();
                    (name.to_string(), dims)
                })
                .collect();
            Ok((Reader::PyTorch(pth), names))
        }
        WeightFormat::Tf => {
            let tf = TfWeights::open(path)?;
            let names = tf.names();
            Ok((Reader::Tf(tf), names))
        }
    }
}

/// How a weight missing from a checkpoint is initialised (transformers' `_init_weights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// normal(0, initializer_range): Linear and Embedding weights.
    Normal(f64),
    /// Zeros: biases.
    Zeros,
    /// Ones: LayerNorm weights.
    Ones,
}

/// What a load has read and created so far.
#[derive(Default)]
pub struct LoadState {
    used: RefCell<BTreeSet<String>>,
    initialized: RefCell<Vec<String>>,
    params: RefCell<BTreeMap<String, Param>>,
    options: LoadOptions,
    version: ParamVersion,
}

impl LoadState {
    /// A load with `options` (dtype, kernels).
    pub fn with_options(options: LoadOptions) -> Self {
        Self {
            options,
            ..Default::default()
        }
    }

    /// Checkpoint names read.
    pub fn used(&self) -> BTreeSet<String> {
        self.used.borrow().clone()
    }

    /// Canonical names of weights that were initialised instead of read.
    pub fn initialized(&self) -> Vec<String> {
        self.initialized.borrow().clone()
    }

    /// Every parameter handed out, by canonical (save) name, with the version counter the
    /// model's derived caches watch.
    pub fn parameters(&self) -> Parameters {
        Parameters::new(self.params.borrow().clone(), self.version.clone())
    }

    /// The dtype parameters are stored in.
    pub fn dtype(&self) -> DType {
        self.options.dtype.unwrap_or(DType::F32)
    }
}

/// A cursor into a checkpoint at a name prefix, recording every tensor it hands out.
///
/// Modules take a `Weights` positioned at their own prefix (`pp("attention.self")`) and ask for
/// tensors by their transformers names, with the shape the config requires. Each view has two
/// prefixes: where the tensor is in this checkpoint, and its canonical name when saved (they
/// differ when a head reuses a backbone saved without the `deberta.` prefix).
#[derive(Clone)]
pub struct Weights<'a> {
    checkpoint: &'a Checkpoint,
    prefix: String,
    canonical: String,
    state: &'a LoadState,
    device: &'a Device,
}

fn join(prefix: &str, segment: &str) -> String {
    match (prefix.is_empty(), segment.is_empty()) {
        (_, true) => prefix.to_string(),
        (true, false) => segment.to_string(),
        (false, false) => format!("{prefix}.{segment}"),
    }
}

impl<'a> Weights<'a> {
    /// A view at the checkpoint root.
    pub fn new(checkpoint: &'a Checkpoint, state: &'a LoadState, device: &'a Device) -> Self {
        Self {
            checkpoint,
            prefix: String::new(),
            canonical: String::new(),
            state,
            device,
        }
    }

    /// A view one name segment deeper (`"encoder"`, `"layer.3"`, ...). An empty segment is a no-op.
    pub fn pp(&self, segment: &str) -> Self {
        Self {
            prefix: join(&self.prefix, segment),
            canonical: join(&self.canonical, segment),
            ..self.clone()
        }
    }

    /// A view whose tensors are read under `actual` but saved under `canonical`.
    pub fn at(&self, actual: &str, canonical: &str) -> Self {
        Self {
            prefix: join(&self.prefix, actual),
            canonical: join(&self.canonical, canonical),
            ..self.clone()
        }
    }

    /// The full checkpoint name of `name` under this view.
    pub fn full_name(&self, name: &str) -> String {
        join(&self.prefix, name)
    }

    /// Whether the checkpoint has `name` under this view.
    pub fn contains(&self, name: &str) -> bool {
        self.checkpoint.contains(&self.full_name(name))
    }

    /// The device tensors are loaded onto.
    pub fn device(&self) -> &Device {
        self.device
    }

    /// The backbone's view: read under `deberta.` when the checkpoint has that prefix, else at
    /// this view's root (a bare `DebertaV2Model` save); always saved under `deberta.`.
    pub fn backbone(&self) -> Self {
        self.backbone_saved_as("deberta")
    }

    /// The backbone's view, saved under `canonical` (`""` for a bare `DebertaV2Model`).
    pub fn backbone_saved_as(&self, canonical: &str) -> Self {
        let prefixed = self
            .checkpoint
            .has_prefix(&format!("{}.", join(&self.prefix, "deberta")));
        self.at(if prefixed { "deberta" } else { "" }, canonical)
    }

    /// The dtype parameters are stored in.
    pub fn dtype(&self) -> DType {
        self.state.dtype()
    }

    /// The load's kernel and path options.
    pub fn kernel_options(&self) -> KernelOptions {
        self.state.options.kernels
    }

    /// The counter of parameter changes the model's derived caches watch.
    pub fn param_version(&self) -> ParamVersion {
        self.state.version.clone()
    }

    /// Loads `name` under this view with exactly `shape`, as a parameter in the load's dtype.
    pub fn get(&self, shape: &[usize], name: &str) -> Result<Param> {
        if let Some(std) = self
            .checkpoint
            .init_missing
            .filter(|_| !self.contains(name))
        {
            let init = if name.ends_with("bias") {
                Init::Zeros
            } else if shape.len() == 1 {
                Init::Ones
            } else {
                Init::Normal(std)
            };
            return self.get_or_init(shape, name, init);
        }
        let full = self.full_name(name);
        let tensor = self.checkpoint.load(&full, shape, self.device)?;
        self.state.used.borrow_mut().insert(full);
        self.record(name, &tensor)
    }

    /// Loads `name`, or initialises it with `init` (and records that) when the checkpoint lacks it.
    pub fn get_or_init(&self, shape: &[usize], name: &str, init: Init) -> Result<Param> {
        if self.contains(name) {
            return self.get(shape, name);
        }
        crate::limits::check_tensor(&join(&self.canonical, name), shape)?;
        let tensor = match init {
            Init::Normal(std) => Tensor::randn(0f32, std as f32, shape, self.device)?,
            Init::Zeros => Tensor::zeros(shape, DType::F32, self.device)?,
            Init::Ones => Tensor::ones(shape, DType::F32, self.device)?,
        };
        self.state
            .initialized
            .borrow_mut()
            .push(join(&self.canonical, name));
        self.record(name, &tensor)
    }

    /// Marks a checkpoint tensor as accounted for without loading it (a tied copy).
    pub fn mark_used(&self, name: &str) {
        if self.contains(name) {
            self.state.used.borrow_mut().insert(self.full_name(name));
        }
    }

    fn record(&self, name: &str, tensor: &Tensor) -> Result<Param> {
        let param = Param::new(&tensor.to_dtype(self.dtype())?)?;
        self.state
            .params
            .borrow_mut()
            .insert(join(&self.canonical, name), param.clone());
        Ok(param)
    }
}

/// What a load did with the checkpoint's tensors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The weight files that were read.
    pub files: Vec<PathBuf>,
    /// Tensors in the checkpoint the model did not use and transformers would warn about.
    pub unexpected: Vec<String>,
    /// Tensors in the checkpoint the model did not use, on transformers' ignore lists.
    pub ignored: Vec<String>,
    /// Tensors the model needed that the checkpoint lacks, initialised as transformers does.
    pub initialized: Vec<String>,
}

impl LoadReport {
    /// Sorts the unused names of `checkpoint` into ignored and unexpected and logs them.
    pub(crate) fn build(
        checkpoint: &Checkpoint,
        used: &BTreeSet<String>,
        initialized: Vec<String>,
        is_ignored: impl Fn(&str) -> bool,
    ) -> Self {
        let mut report = LoadReport {
            files: checkpoint.paths().iter().map(|p| p.to_path_buf()).collect(),
            initialized,
            ..Default::default()
        };
        for name in checkpoint.names().filter(|n| !used.contains(*n)) {
            if is_ignored(name) {
                report.ignored.push(name.to_string());
            } else {
                report.unexpected.push(name.to_string());
            }
        }
        if !report.unexpected.is_empty() {
            tracing::warn!(
                names = ?report.unexpected,
                "checkpoint tensors not used by this model"
            );
        }
        if !report.initialized.is_empty() {
            tracing::warn!(
                names = ?report.initialized,
                "weights missing from the checkpoint were newly initialised"
            );
        }
        report
    }
}
