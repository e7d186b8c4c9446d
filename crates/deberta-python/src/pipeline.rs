//! `NativePipeline`: the task pipelines of `deberta-tasks`, driven as the CLI drives them.
//! Inputs, options and outputs cross as JSON, so a result is the CLI's JSON line, value for
//! value.

use candle_core::Device;
use deberta::HeadKind;
use deberta_tasks::{
    Aggregation, ChoiceInput, ClassifyInput, ClassifyOptions, Engine, EngineOptions, FillMask,
    FillMaskOptions, MultipleChoice, NerOptions, QaInput, QaOptions, QuestionAnswering,
    ScoreFunction, TextClassification, TokenClassification, TopK, ZeroShot, ZeroShotInput,
    ZeroShotOptions,
};
use deberta_tokenizer::{Impl, Tokenizer};
use pyo3::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Failure, Outcome};
use crate::model::load_options;
use crate::runtime::Threads;

/// The tasks, by transformers' pipeline name.
const TASKS: [(&str, HeadKind); 7] = [
    ("fill-mask", HeadKind::MaskedLm),
    ("text-classification", HeadKind::SequenceClassification),
    ("zero-shot-classification", HeadKind::SequenceClassification),
    ("token-classification", HeadKind::TokenClassification),
    ("ner", HeadKind::TokenClassification),
    ("question-answering", HeadKind::QuestionAnswering),
    ("multiple-choice", HeadKind::MultipleChoice),
];

/// Options of the pipeline itself (`pipeline(task, model, **options)`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Setup {
    batch_size: usize,
    max_length: Option<usize>,
    dtype: String,
    threads: Option<usize>,
    tokenizer: Option<String>,
    tokenizer_kind: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            batch_size: 8,
            max_length: None,
            dtype: "f32".into(),
            threads: None,
            tokenizer: None,
            tokenizer_kind: "auto".into(),
        }
    }
}

enum Task {
    FillMask(FillMask),
    Classify(TextClassification),
    ZeroShot(ZeroShot),
    Ner(TokenClassification),
    Qa(QuestionAnswering),
    Choice(MultipleChoice),
}

impl Task {
    fn new(task: &str, engine: Engine) -> Outcome<Task> {
        Ok(match task {
            "fill-mask" => Task::FillMask(FillMask::new(engine)?),
            "text-classification" => Task::Classify(TextClassification::new(engine)),
            "zero-shot-classification" => Task::ZeroShot(ZeroShot::new(engine)),
            "token-classification" | "ner" => Task::Ner(TokenClassification::new(engine)),
            "question-answering" => Task::Qa(QuestionAnswering::new(engine)),
            _ => Task::Choice(MultipleChoice::new(engine)),
        })
    }

    fn engine(&self) -> &Engine {
        match self {
            Task::FillMask(p) => p.engine(),
            Task::Classify(p) => p.engine(),
            Task::ZeroShot(p) => p.engine(),
            Task::Ner(p) => p.engine(),
            Task::Qa(p) => p.engine(),
            Task::Choice(p) => p.engine(),
        }
    }
}

/// Text-classification options as JSON: `top_k` is `"legacy"` (not given), `"all"` (None)
/// or a number.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyJson {
    #[serde(default)]
    top_k: Option<serde_json::Value>,
    #[serde(default)]
    function_to_apply: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZeroShotJson {
    #[serde(default)]
    candidate_labels: Vec<String>,
    #[serde(default)]
    hypothesis_template: Option<String>,
    #[serde(default)]
    multi_label: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NerJson {
    #[serde(default)]
    aggregation_strategy: Option<String>,
    #[serde(default)]
    ignore_labels: Option<Vec<String>>,
    #[serde(default)]
    stride: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QaJson {
    top_k: Option<usize>,
    doc_stride: Option<usize>,
    max_answer_len: Option<usize>,
    max_seq_len: Option<usize>,
    max_question_len: Option<usize>,
    handle_impossible_answer: Option<bool>,
    align_to_words: Option<bool>,
}

fn parse<T: DeserializeOwned>(json: &str, what: &str) -> Outcome<T> {
    serde_json::from_str(json).map_err(|e| Failure::value(format!("{what}: {e}")))
}

fn classify_options(json: &str) -> Outcome<ClassifyOptions> {
    let o: ClassifyJson = parse(json, "options")?;
    let top_k = match o.top_k {
        None => TopK::Legacy,
        Some(serde_json::Value::String(s)) if s == "legacy" => TopK::Legacy,
        Some(serde_json::Value::String(s)) if s == "all" => TopK::All,
        Some(v) => TopK::K(
            v.as_u64()
                .map(|k| k as usize)
                .ok_or_else(|| Failure::value(format!("top_k must be an int or None, got {v}")))?,
        ),
    };
    let function_to_apply = o
        .function_to_apply
        .as_deref()
        .map(str::parse::<ScoreFunction>)
        .transpose()?;
    Ok(ClassifyOptions {
        top_k,
        function_to_apply,
    })
}

fn zero_shot_options(json: &str) -> Outcome<ZeroShotOptions> {
    let o: ZeroShotJson = parse(json, "options")?;
    let mut options = ZeroShotOptions {
        candidate_labels: o.candidate_labels,
        multi_label: o.multi_label,
        ..Default::default()
    };
    if let Some(t) = o.hypothesis_template {
        options.hypothesis_template = t;
    }
    Ok(options)
}

fn ner_options(json: &str) -> Outcome<NerOptions> {
    let o: NerJson = parse(json, "options")?;
    let mut options = NerOptions {
        stride: o.stride,
        ..Default::default()
    };
    if let Some(a) = o.aggregation_strategy {
        options.aggregation = a.parse::<Aggregation>()?;
    }
    if let Some(ignore) = o.ignore_labels {
        options.ignore_labels = ignore;
    }
    Ok(options)
}

fn qa_options(json: &str) -> Outcome<QaOptions> {
    let o: QaJson = parse(json, "options")?;
    let d = QaOptions::default();
    Ok(QaOptions {
        top_k: o.top_k.unwrap_or(d.top_k),
        doc_stride: o.doc_stride,
        max_answer_len: o.max_answer_len.unwrap_or(d.max_answer_len),
        max_seq_len: o.max_seq_len,
        max_question_len: o.max_question_len.unwrap_or(d.max_question_len),
        handle_impossible_answer: o
            .handle_impossible_answer
            .unwrap_or(d.handle_impossible_answer),
        align_to_words: o.align_to_words.unwrap_or(d.align_to_words),
    })
}

/// The outputs as a JSON list, or the first failure (named by its input's index when there
/// are several inputs).
fn collect<R: Serialize>(results: Vec<deberta_tasks::Result<R>>) -> Outcome<String> {
    let many = results.len() > 1;
    let mut ok = Vec::with_capacity(results.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(v) => ok.push(v),
            Err(e) if many => return Err(Failure::from(e).prefixed(&format!("input {i}"))),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(serde_json::to_string(&ok)?)
}

impl Task {
    fn run(&self, inputs: &str, options: &str) -> Outcome<String> {
        match self {
            Task::FillMask(p) => {
                let texts: Vec<String> = parse(inputs, "inputs")?;
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let options: FillMaskOptions = parse(options, "options")?;
                collect(p.run_batch(&refs, &options))
            }
            Task::Classify(p) => {
                let inputs: Vec<ClassifyInput> = parse(inputs, "inputs")?;
                collect(p.run_batch(&inputs, &classify_options(options)?))
            }
            Task::ZeroShot(p) => {
                let inputs: Vec<ZeroShotInput> = parse(inputs, "inputs")?;
                collect(p.run_batch(&inputs, &zero_shot_options(options)?))
            }
            Task::Ner(p) => {
                let texts: Vec<String> = parse(inputs, "inputs")?;
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                collect(p.run_batch(&refs, &ner_options(options)?))
            }
            Task::Qa(p) => {
                let inputs: Vec<QaInput> = parse(inputs, "inputs")?;
                collect(p.run_batch(&inputs, &qa_options(options)?))
            }
            Task::Choice(p) => {
                let inputs: Vec<ChoiceInput> = parse(inputs, "inputs")?;
                let _: serde_json::Map<String, serde_json::Value> = parse(options, "options")?;
                collect(p.run_batch(&inputs))
            }
        }
    }
}

/// A task pipeline over one checkpoint.
#[pyclass(module = "deberta_rs._deberta_rs", frozen)]
pub struct NativePipeline {
    task: Task,
    name: String,
    threads: Threads,
}

#[pymethods]
impl NativePipeline {
    /// Loads the pipeline `task` (transformers' name) over the checkpoint `model` (a directory
    /// or a hub id in the HuggingFace cache); `setup` is a JSON object of `batch_size`,
    /// `max_length`, `dtype`, `threads`, `tokenizer` (another directory) and `tokenizer_kind`.
    #[new]
    #[pyo3(signature = (task, model, setup = "{}".to_string()))]
    fn new(py: Python<'_>, task: String, model: String, setup: String) -> PyResult<Self> {
        let task = task.as_str();
        let Some(&(_, head)) = TASKS.iter().find(|t| t.0 == task) else {
            let names: Vec<&str> = TASKS.iter().map(|t| t.0).collect();
            return Err(Failure::value(format!(
                "unknown task {task:?} (expected one of {})",
                names.join(", ")
            ))
            .into());
        };
        let setup: Setup = parse(&setup, "pipeline options")?;
        if setup.batch_size == 0 {
            return Err(Failure::value("batch_size must be at least 1").into());
        }
        let load = load_options(&setup.dtype)?;
        let kind: Impl = setup.tokenizer_kind.parse().map_err(Failure::from)?;
        let threads = Threads::new(setup.threads)?;
        let name = task.to_string();
        let built = threads.run(py, move || {
            let dir = deberta_tasks::resolve_model(&model)?;
            let tokenizer_dir = setup
                .tokenizer
                .clone()
                .map_or_else(|| dir.clone(), std::path::PathBuf::from);
            let tokenizer = Tokenizer::from_dir_with(&tokenizer_dir, kind)?;
            let engine = Engine::with_load_options(&dir, tokenizer, head, &Device::Cpu, load)?
                .with_options(EngineOptions {
                    batch_size: setup.batch_size,
                    max_length: setup.max_length,
                    ..Default::default()
                });
            Task::new(&name, engine)
        })?;
        Ok(NativePipeline {
            task: built,
            name: task.to_string(),
            threads,
        })
    }

    /// The task name.
    #[getter]
    fn task(&self) -> &str {
        &self.name
    }

    /// The rows per forward pass.
    #[getter]
    fn batch_size(&self) -> usize {
        self.task.engine().options().batch_size
    }

    /// The execution plan (path, kernels, format, threads).
    #[getter]
    fn plan(&self) -> String {
        format!(
            "{} (pool threads={})",
            self.task.engine().plan(),
            self.threads.effective()
        )
    }

    /// `id2label` of the model.
    fn id2label(&self) -> Vec<String> {
        let config = self.task.engine().model().config();
        (0..config.num_labels())
            .map(|i| config.label_name(i))
            .collect()
    }

    /// Runs a JSON list of inputs with a JSON object of call options; returns the JSON list
    /// of outputs (raises on the first input that fails). `batch_size` overrides the
    /// pipeline's for this call.
    #[pyo3(signature = (inputs, options = "{}".to_string(), batch_size = None))]
    fn run(
        &self,
        py: Python<'_>,
        inputs: String,
        options: String,
        batch_size: Option<usize>,
    ) -> PyResult<String> {
        let task = &self.task;
        let name = self.name.clone();
        self.threads.run(py, move || match batch_size {
            Some(0) => Err(Failure::value("batch_size must be at least 1")),
            Some(b) if b != task.engine().options().batch_size => {
                let engine = task.engine().clone().with_options(EngineOptions {
                    batch_size: b,
                    ..task.engine().options()
                });
                Task::new(&name, engine)?.run(&inputs, &options)
            }
            _ => task.run(&inputs, &options),
        })
    }
}
