//! `NativeModel`: any DeBERTa-v2/v3 head on numpy arrays.

use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use deberta::{
    ForwardOptions, HeadKind, KernelOptions, Labels, LinearFormat, LoadOptions, ModelInput,
    TaskModel, TaskOutput,
};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::error::{Failure, Outcome};
use crate::runtime::Threads;
use crate::tokenizer::to_u32;

/// A loaded model with its thread pool.
#[pyclass(module = "deberta_rs._deberta_rs", frozen)]
pub struct NativeModel {
    model: TaskModel,
    threads: Threads,
    path: String,
    dtype: String,
}

/// The load options of `dtype` (`f32`, `bf16`, `int8`), with the `DEBERTA_CPU_*` kernel
/// settings of the environment, as the CLI reads them.
pub fn load_options(dtype: &str) -> Outcome<LoadOptions> {
    let format = match LinearFormat::NAMES.iter().position(|n| *n == dtype) {
        Some(_) => LinearFormat::from_str(dtype)
            .map_err(|e| Failure::value(format!("dtype {dtype:?}: {e}")))?,
        None => {
            return Err(Failure::value(format!(
                "dtype must be one of {}, got {dtype:?}",
                LinearFormat::NAMES.join(", ")
            )))
        }
    };
    let mut kernels = KernelOptions::from_vars(|name| std::env::var(name).ok())?;
    kernels.linear_format = format;
    Ok(LoadOptions {
        dtype: None,
        kernels,
    })
}

/// The head named `head`: `auto` (config.json's `architectures`), a CLI name
/// (`sequence-classification`) or a transformers class name.
pub fn head_kind(head: &str) -> Outcome<Option<HeadKind>> {
    match head {
        "auto" => Ok(None),
        other => Ok(Some(HeadKind::from_str(other)?)),
    }
}

/// An array's values (any layout) and shape.
struct Owned<T> {
    values: Vec<T>,
    shape: Vec<usize>,
}

fn owned<T: numpy::Element + Copy>(a: &PyReadonlyArrayDyn<'_, T>) -> Owned<T> {
    Owned {
        values: a.as_array().iter().copied().collect(),
        shape: a.shape().to_vec(),
    }
}

/// A tensor's values (as f32) and shape.
struct Out {
    values: Vec<f32>,
    shape: Vec<usize>,
}

fn out(t: &Tensor) -> Outcome<Out> {
    Ok(Out {
        shape: t.dims().to_vec(),
        values: t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
    })
}

/// The outputs copied out of the tensors, in transformers' field order.
#[derive(Default)]
struct Outputs {
    fields: Vec<(&'static str, Out)>,
    hidden_states: Option<Vec<Out>>,
    attentions: Option<Vec<Out>>,
}

fn outputs(o: &TaskOutput) -> Outcome<Outputs> {
    let mut r = Outputs::default();
    for (name, t) in [
        ("loss", &o.loss),
        ("logits", &o.logits),
        ("start_logits", &o.start_logits),
        ("end_logits", &o.end_logits),
        ("last_hidden_state", &o.last_hidden_state),
    ] {
        if let Some(t) = t {
            r.fields.push((name, out(t)?));
        }
    }
    let all = |v: &Option<Vec<Tensor>>| -> Outcome<Option<Vec<Out>>> {
        v.as_ref()
            .map(|ts| ts.iter().map(out).collect::<Outcome<Vec<_>>>())
            .transpose()
    };
    r.hidden_states = all(&o.hidden_states)?;
    r.attentions = all(&o.attentions)?;
    Ok(r)
}

fn array<'py>(py: Python<'py>, o: Out) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, o.values)
        .reshape(o.shape)?
        .into_any())
}

fn ids_tensor(a: Option<Owned<i64>>, what: &str) -> Outcome<Option<Tensor>> {
    a.map(|a| {
        let v = to_u32(&a.values, what)?;
        Ok(Tensor::from_vec(v, a.shape.as_slice(), &Device::Cpu)?)
    })
    .transpose()
}

#[pymethods]
impl NativeModel {
    /// Loads the model in `path` with `head` (see `head_kind`), linear layers in `dtype`, and
    /// `threads` intra-op threads of its own (`None`: the process-wide pool).
    #[new]
    #[pyo3(signature = (path, head = "auto".to_string(), dtype = "f32".to_string(), threads = None))]
    fn new(
        py: Python<'_>,
        path: String,
        head: String,
        dtype: String,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let kind = head_kind(&head)?;
        let load = load_options(&dtype)?;
        let threads = Threads::new(threads)?;
        let dir = path.clone();
        let model = threads.run(py, move || {
            let dir = deberta_tasks::resolve_model(&dir)?;
            Ok(TaskModel::from_pretrained_with(
                &dir,
                kind,
                &Device::Cpu,
                load,
            )?)
        })?;
        Ok(NativeModel {
            model,
            threads,
            path,
            dtype,
        })
    }

    /// The directory (or hub id) it was loaded from.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// The compute type of the linear layers.
    #[getter]
    fn dtype(&self) -> &str {
        &self.dtype
    }

    /// The `threads` it was loaded with (`None`: the process-wide pool).
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.threads.count()
    }

    /// transformers' class name of the head (`DebertaV2ForSequenceClassification`, ...).
    #[getter]
    fn class_name(&self) -> &'static str {
        self.model.kind().class_name()
    }

    /// The execution plan (path, kernels, format, threads).
    #[getter]
    fn plan(&self) -> String {
        let plan = self.model.plan().to_string();
        format!("{plan} (pool threads={})", self.threads.effective())
    }

    /// config.json as loaded (a JSON string).
    fn config_json(&self) -> PyResult<String> {
        Ok(serde_json::to_string(self.model.config()).map_err(Failure::from)?)
    }

    /// `id2label` (every label the head has).
    fn id2label(&self) -> Vec<String> {
        let config = self.model.config();
        (0..config.num_labels())
            .map(|i| config.label_name(i))
            .collect()
    }

    /// One forward pass. Ids, masks and positions are int64 arrays `[batch, len]` (multiple
    /// choice: `[batch, choices, len]`); integer labels in `labels`, float labels (regression,
    /// multi-label, soft labels) in `float_labels`. Returns a dict of float32 arrays named as
    /// transformers' output fields; hidden states and attentions are tuples of arrays.
    #[pyo3(signature = (
        input_ids, attention_mask = None, token_type_ids = None, position_ids = None,
        labels = None, float_labels = None, start_positions = None, end_positions = None,
        output_hidden_states = false, output_attentions = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        input_ids: PyReadonlyArrayDyn<'py, i64>,
        attention_mask: Option<PyReadonlyArrayDyn<'py, i64>>,
        token_type_ids: Option<PyReadonlyArrayDyn<'py, i64>>,
        position_ids: Option<PyReadonlyArrayDyn<'py, i64>>,
        labels: Option<PyReadonlyArrayDyn<'py, i64>>,
        float_labels: Option<PyReadonlyArrayDyn<'py, f32>>,
        start_positions: Option<PyReadonlyArrayDyn<'py, i64>>,
        end_positions: Option<PyReadonlyArrayDyn<'py, i64>>,
        output_hidden_states: bool,
        output_attentions: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ids = owned(&input_ids);
        let mask = attention_mask.as_ref().map(owned);
        let types = token_type_ids.as_ref().map(owned);
        let positions = position_ids.as_ref().map(owned);
        let int_labels = labels.as_ref().map(owned);
        let float_labels = float_labels.as_ref().map(owned);
        let starts = start_positions.as_ref().map(owned);
        let ends = end_positions.as_ref().map(owned);
        let model = &self.model;
        let result = self.threads.run(py, move || {
            let ids = ids_tensor(Some(ids), "input id")?
                .ok_or_else(|| Failure::value("input_ids is required"))?;
            let mut input = ModelInput::from_ids(ids);
            if let Some(t) = ids_tensor(mask, "attention_mask value")? {
                input = input.with_attention_mask(t);
            }
            if let Some(t) = ids_tensor(types, "token type id")? {
                input = input.with_token_type_ids(t);
            }
            if let Some(t) = ids_tensor(positions, "position id")? {
                input = input.with_position_ids(t);
            }
            let cpu = &Device::Cpu;
            let label_tensor = match (int_labels, float_labels) {
                (Some(l), _) => Some(Tensor::from_vec(l.values, l.shape.as_slice(), cpu)?),
                (None, Some(l)) => Some(Tensor::from_vec(l.values, l.shape.as_slice(), cpu)?),
                (None, None) => None,
            };
            let pos = |p: Option<Owned<i64>>| -> Outcome<Option<Tensor>> {
                p.map(|p| Ok(Tensor::from_vec(p.values, p.shape.as_slice(), cpu)?))
                    .transpose()
            };
            let (starts, ends) = (pos(starts)?, pos(ends)?);
            let labels = Labels {
                labels: label_tensor.as_ref(),
                start_positions: starts.as_ref(),
                end_positions: ends.as_ref(),
            };
            let opts = ForwardOptions {
                output_hidden_states,
                output_attentions,
            };
            outputs(&model.forward(&input, labels, opts)?)
        })?;
        let dict = PyDict::new(py);
        for (name, o) in result.fields {
            dict.set_item(name, array(py, o)?)?;
        }
        for (name, list) in [
            ("hidden_states", result.hidden_states),
            ("attentions", result.attentions),
        ] {
            if let Some(list) = list {
                let arrays: Vec<Bound<'py, PyAny>> = list
                    .into_iter()
                    .map(|o| array(py, o))
                    .collect::<PyResult<_>>()?;
                dict.set_item(name, PyTuple::new(py, arrays)?)?;
            }
        }
        Ok(dict)
    }
}
