//! A model and its tokenizer, and the batched forward pass every task shares. On the fused CPU
//! path inputs run in batches without padding, each sequence at its own length
//! (`TaskModel::forward_sequences`); elsewhere they are sorted by length, cut into batches,
//! right-padded and run. Either way the outputs come back per input in the original order.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use deberta::{
    ExecutionPlan, ForwardOptions, HeadKind, Labels, LinearFormat, LoadOptions, ModelInput,
    Sequence, TaskModel, TaskOutput,
};
use deberta_tokenizer::{Encoding, Side, Tokenizer};

use crate::error::{Error, Result};

/// The token ids of one model input row (one text, pair or window).
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
}

impl From<&Encoding> for Feature {
    fn from(e: &Encoding) -> Self {
        Feature {
            ids: e.input_ids.clone(),
            type_ids: e.token_type_ids.clone(),
        }
    }
}

/// The outputs for one unit (a feature, or the choices of one multiple-choice question),
/// without padding.
#[derive(Debug, Clone, Default)]
pub struct UnitOutput {
    /// Sequence logits `[labels]`, choice logits `[choices]`, or token logits `[len][labels]`
    /// flattened row by row (see `rows`).
    pub logits: Vec<f32>,
    /// Number of rows of `logits` (1 for sequence-level heads).
    pub rows: usize,
    /// Question answering start logits `[len]`.
    pub start: Vec<f32>,
    /// Question answering end logits `[len]`.
    pub end: Vec<f32>,
}

impl UnitOutput {
    /// Row `i` of the logits.
    pub fn row(&self, i: usize) -> &[f32] {
        let width = self.logits.len() / self.rows.max(1);
        self.logits.get(i * width..(i + 1) * width).unwrap_or(&[])
    }
}

/// Settings of the batched forward pass.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Rows per forward pass.
    pub batch_size: usize,
    /// Truncate inputs to this many tokens where the task allows it (overrides the tokenizer's
    /// `model_max_length`).
    pub max_length: Option<usize>,
    /// The end that truncation to `max_length` cuts, for classification, fill-mask and
    /// multiple choice (default: the tokenizer's `truncation_side`).
    pub truncation_side: Option<Side>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            batch_size: 8,
            max_length: None,
            truncation_side: None,
        }
    }
}

/// A loaded model with its tokenizer. Cloning is cheap for the model (its weights are shared),
/// so clones with other [`EngineOptions`] can serve one model under several settings.
#[derive(Clone)]
pub struct Engine {
    model: Arc<TaskModel>,
    tokenizer: Tokenizer,
    device: Device,
    options: EngineOptions,
}

impl Engine {
    /// Loads the `head` model and the tokenizer from a checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>, head: HeadKind, device: &Device) -> Result<Self> {
        let tokenizer = Tokenizer::from_dir(&dir)?;
        Self::with_tokenizer(dir, tokenizer, head, device)
    }

    /// Loads the model from `dir` and uses `tokenizer`.
    pub fn with_tokenizer(
        dir: impl AsRef<Path>,
        tokenizer: Tokenizer,
        head: HeadKind,
        device: &Device,
    ) -> Result<Self> {
        Self::with_load_options(dir, tokenizer, head, device, LoadOptions::default())
    }

    /// [`Self::with_tokenizer`] with a dtype and kernel options (the execution path is chosen
    /// from them once, here).
    pub fn with_load_options(
        dir: impl AsRef<Path>,
        tokenizer: Tokenizer,
        head: HeadKind,
        device: &Device,
        load: LoadOptions,
    ) -> Result<Self> {
        let model = TaskModel::from_pretrained_with(dir, Some(head), device, load)?;
        for name in &model.report().initialized {
            tracing::warn!("{name} was not in the checkpoint and was initialised at random");
        }
        Ok(Engine {
            model: Arc::new(model),
            tokenizer,
            device: device.clone(),
            options: EngineOptions::default(),
        })
    }

    /// Sets batch size and maximum length.
    pub fn with_options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// Switches the model's encoder linear layers to dynamic int8 (CPU only; see
    /// `TaskModel::quantize_int8`).
    pub fn quantize_int8(self) -> Result<Self> {
        self.with_linear_format(LinearFormat::Int8)
    }

    /// The model's encoder linear layers in `format` (see `TaskModel::set_linear_format`).
    /// Fails once the engine has been cloned (the clones share the model).
    pub fn with_linear_format(mut self, format: LinearFormat) -> Result<Self> {
        Arc::get_mut(&mut self.model)
            .ok_or_else(|| Error::Model("the model is shared by a clone of this engine".into()))?
            .set_linear_format(format)?;
        Ok(self)
    }

    /// The execution plan the model runs (path, kernels, format).
    pub fn plan(&self) -> &ExecutionPlan {
        self.model.plan()
    }

    /// The settings.
    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// The model (config, labels).
    pub fn model(&self) -> &TaskModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Whether [`Self::run`] runs batches unpadded (the fused CPU path): a batch then costs
    /// the sum of its sequences' costs, whatever their lengths.
    pub fn runs_unpadded(&self) -> bool {
        self.model.runs_unpadded()
    }

    /// Runs every unit (one feature, or several for multiple choice) and returns the outputs in
    /// the input order. On the fused CPU path units run `batch_size` at a time in input order,
    /// unpadded; elsewhere they are sorted by length and batched, units of one batch sharing
    /// their number of features.
    pub fn run(&self, units: &[&[Feature]]) -> Result<Vec<UnitOutput>> {
        if self.runs_unpadded() {
            let mut out = Vec::with_capacity(units.len());
            for batch in units.chunks(self.options.batch_size.max(1)) {
                out.extend(self.forward_unpadded(batch)?);
            }
            return Ok(out);
        }
        let len = |u: &[Feature]| u.iter().map(|f| f.ids.len()).max().unwrap_or(0);
        let mut order: Vec<usize> = (0..units.len()).collect();
        order.sort_by_key(|&i| units.get(i).map(|u| (u.len(), len(u))));
        let mut out = vec![UnitOutput::default(); units.len()];
        let mut start = 0;
        while start < order.len() {
            let width = units.get(order[start]).map_or(0, |u| u.len());
            let mut stop = start + 1;
            while stop < order.len()
                && stop - start < self.options.batch_size.max(1)
                && units.get(order[stop]).map(|u| u.len()) == Some(width)
            {
                stop += 1;
            }
            let batch: Vec<&[Feature]> = order[start..stop]
                .iter()
                .filter_map(|&i| units.get(i).copied())
                .collect();
            for (k, o) in self.forward(&batch)?.into_iter().enumerate() {
                if let Some(slot) = order.get(start + k).and_then(|&i| out.get_mut(i)) {
                    *slot = o;
                }
            }
            start = stop;
        }
        Ok(out)
    }

    /// One padded forward pass over units with the same number of features.
    fn forward(&self, batch: &[&[Feature]]) -> Result<Vec<UnitOutput>> {
        let choices = batch.first().map_or(1, |u| u.len());
        let max_len = batch
            .iter()
            .flat_map(|u| u.iter().map(|f| f.ids.len()))
            .max()
            .unwrap_or(0);
        if max_len == 0 || choices == 0 {
            return Err(Error::input("text", "encodes to no tokens"));
        }
        let pad = self.tokenizer.special_ids().pad.0;
        let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for f in batch.iter().flat_map(|u| u.iter()) {
            let n = max_len - f.ids.len();
            ids.extend(f.ids.iter().copied().chain(std::iter::repeat_n(pad, n)));
            types.extend(f.type_ids.iter().copied().chain(std::iter::repeat_n(0, n)));
            mask.extend(std::iter::repeat_n(1u32, f.ids.len()).chain(std::iter::repeat_n(0, n)));
        }
        let multiple_choice = self.model.kind() == HeadKind::MultipleChoice;
        let shape: Vec<usize> = if multiple_choice {
            vec![batch.len(), choices, max_len]
        } else {
            vec![batch.len() * choices, max_len]
        };
        let t = |v: Vec<u32>| Tensor::from_vec(v, shape.as_slice(), &self.device);
        let input = ModelInput::from_ids(t(ids)?)
            .with_attention_mask(t(mask)?)
            .with_token_type_ids(t(types)?);
        let out = self
            .model
            .forward(&input, Labels::default(), ForwardOptions::default())?;
        split_outputs(&out, batch)
    }
}

impl Engine {
    /// One unpadded forward pass over every feature of `batch` (each at its own length).
    fn forward_unpadded(&self, batch: &[&[Feature]]) -> Result<Vec<UnitOutput>> {
        let sequences: Vec<Sequence> = batch
            .iter()
            .flat_map(|u| u.iter())
            .map(|f| Sequence::new(&f.ids).with_token_type_ids(&f.type_ids))
            .collect();
        if batch.iter().any(|u| u.is_empty()) || sequences.iter().any(|s| s.input_ids.is_empty()) {
            return Err(Error::input("text", "encodes to no tokens"));
        }
        let mut outputs = self.model.forward_sequences(&sequences)?.into_iter();
        let multiple_choice = self.model.kind() == HeadKind::MultipleChoice;
        batch
            .iter()
            .map(|unit| {
                let mine: Vec<TaskOutput> = outputs.by_ref().take(unit.len()).collect();
                unit_output(&mine, multiple_choice)
            })
            .collect()
    }
}

/// One unit's output from its sequences' outputs (one per feature, batch size 1): the choices'
/// scores side by side for multiple choice, else the single feature's logits.
fn unit_output(outs: &[TaskOutput], multiple_choice: bool) -> Result<UnitOutput> {
    let flat = |t: &Option<Tensor>| -> Result<Vec<f32>> {
        match t {
            Some(t) => Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?),
            None => Ok(Vec::new()),
        }
    };
    if multiple_choice {
        let mut logits = Vec::with_capacity(outs.len());
        for o in outs {
            logits.extend(flat(&o.logits)?);
        }
        return Ok(UnitOutput {
            logits,
            rows: 1,
            ..Default::default()
        });
    }
    let Some(o) = outs.first() else {
        return Err(Error::Model(
            "the model returned no output for a unit".into(),
        ));
    };
    // `[1, len, C]` token logits have `len` rows; `[1, C]` sequence logits one.
    let rows = match &o.logits {
        Some(t) if t.rank() == 3 => t.dim(1)?,
        _ => 1,
    };
    Ok(UnitOutput {
        logits: flat(&o.logits)?,
        rows,
        start: flat(&o.start_logits)?,
        end: flat(&o.end_logits)?,
    })
}

/// Cuts the batch outputs back into per-unit outputs without padding.
fn split_outputs(out: &deberta::TaskOutput, batch: &[&[Feature]]) -> Result<Vec<UnitOutput>> {
    let to_vec = |t: &Tensor| -> Result<Vec<Vec<f32>>> {
        let t = t.to_dtype(DType::F32)?;
        let b = t.dim(0)?;
        Ok(t.reshape((b, ()))?.to_vec2::<f32>()?)
    };
    let logits = out.logits.as_ref().map(to_vec).transpose()?;
    let token_level = out.logits.as_ref().is_some_and(|t| t.rank() == 3);
    let start = out.start_logits.as_ref().map(to_vec).transpose()?;
    let end = out.end_logits.as_ref().map(to_vec).transpose()?;
    let mut result = Vec::with_capacity(batch.len());
    for (i, unit) in batch.iter().enumerate() {
        let len = unit.first().map_or(0, |f| f.ids.len());
        let pick = |rows: &Option<Vec<Vec<f32>>>, keep: usize| -> Vec<f32> {
            rows.as_ref()
                .and_then(|r| r.get(i))
                .map(|r| r.iter().copied().take(keep).collect())
                .unwrap_or_default()
        };
        let mut o = UnitOutput {
            start: pick(&start, len),
            end: pick(&end, len),
            rows: 1,
            ..Default::default()
        };
        if token_level {
            let width = logits
                .as_ref()
                .and_then(|r| r.first())
                .map_or(0, |r| r.len() / batch_max_len(batch).max(1));
            o.logits = pick(&logits, len * width);
            o.rows = len;
        } else {
            o.logits = pick(&logits, usize::MAX);
        }
        result.push(o);
    }
    Ok(result)
}

fn batch_max_len(batch: &[&[Feature]]) -> usize {
    batch
        .iter()
        .flat_map(|u| u.iter().map(|f| f.ids.len()))
        .max()
        .unwrap_or(0)
}

/// A pipeline cut into its stages, for callers that schedule the forward passes themselves
/// (a server batching the inputs of many requests together): [`Staged::prepare`] tokenizes,
/// [`Staged::units`] gives the model units of each prepared input (run them with
/// [`Engine::run`], grouped in any way), and [`Staged::finish`] turns their outputs into the
/// answer. `run_batch` of each pipeline is these three stages in a row.
pub trait Staged {
    /// One input.
    type Input;
    /// The options of a call.
    type Options;
    /// An input tokenized, with what [`Staged::finish`] needs.
    type Prepared;
    /// The answer for one input.
    type Output;

    /// The engine the pipeline runs on.
    fn engine(&self) -> &Engine;

    /// Checks the options and tokenizes each input; one result per input, in order.
    fn prepare(
        &self,
        inputs: &[Self::Input],
        options: &Self::Options,
    ) -> Vec<Result<Self::Prepared>>;

    /// The model units of a prepared input, in the order [`Staged::finish`] expects them.
    fn units(prepared: &Self::Prepared) -> Vec<Vec<Feature>>;

    /// The answer from the outputs of the input's units (in [`Staged::units`]' order).
    fn finish(
        &self,
        prepared: &Self::Prepared,
        outputs: &[UnitOutput],
        options: &Self::Options,
    ) -> Result<Self::Output>;
}

/// A [`Staged`] pipeline's `run_batch`: the three stages in a row.
pub(crate) fn run_staged<S: Staged>(
    pipeline: &S,
    inputs: &[S::Input],
    options: &S::Options,
) -> Vec<Result<S::Output>> {
    run_items(
        pipeline.engine(),
        pipeline.prepare(inputs, options),
        S::units,
        |p, out| pipeline.finish(p, out, options),
    )
}

/// Runs `prepared` items through the engine: an item whose preparation failed keeps its error;
/// when a batch fails, its items are retried one by one so that only the bad one fails.
pub(crate) fn run_items<P, R>(
    engine: &Engine,
    prepared: Vec<Result<P>>,
    units: impl Fn(&P) -> Vec<Vec<Feature>>,
    post: impl Fn(&P, &[UnitOutput]) -> Result<R>,
) -> Vec<Result<R>> {
    let item_units: Vec<Option<Vec<Vec<Feature>>>> = prepared
        .iter()
        .map(|p| p.as_ref().ok().map(&units))
        .collect();
    let flat: Vec<&[Feature]> = item_units
        .iter()
        .flatten()
        .flat_map(|u| u.iter().map(Vec::as_slice))
        .collect();
    let outputs = match engine.run(&flat) {
        Ok(o) => o,
        Err(_) if prepared.len() > 1 => return one_by_one(engine, prepared, units, post),
        Err(e) => return vec![Err(e)],
    };
    let mut outputs = outputs.into_iter();
    prepared
        .into_iter()
        .zip(item_units)
        .map(|(p, u)| {
            let p = p?;
            let n = u.map_or(0, |u| u.len());
            let mine: Vec<UnitOutput> = outputs.by_ref().take(n).collect();
            post(&p, &mine)
        })
        .collect()
}

fn one_by_one<P, R>(
    engine: &Engine,
    prepared: Vec<Result<P>>,
    units: impl Fn(&P) -> Vec<Vec<Feature>>,
    post: impl Fn(&P, &[UnitOutput]) -> Result<R>,
) -> Vec<Result<R>> {
    prepared
        .into_iter()
        .map(|p| {
            let p = p?;
            let u = units(&p);
            let refs: Vec<&[Feature]> = u.iter().map(Vec::as_slice).collect();
            let out = engine.run(&refs)?;
            post(&p, &out)
        })
        .collect()
}
