//! The JSON-lines training formats of every task, tokenised as transformers' example scripts
//! prepare them, and batched for the model.
//!
//! One example per line (blank lines are ignored):
//!
//! | task | line | prepared like |
//! |---|---|---|
//! | [`Task::SequenceClassification`] | `{"text", "text_pair"?, "label"}` | `run_glue` / `run_classification` |
//! | [`Task::TokenClassification`] | `{"tokens": [...], "tags": [...]}` | `run_ner` (`label_all_tokens=False`) |
//! | [`Task::QuestionAnswering`] | `{"id"?, "question", "context", "answers": {"text": [...], "answer_start": [...]}}` | `run_qa` |
//! | [`Task::MultipleChoice`] | `{"prompt", "choices": [...], "label"}` | `run_swag` |
//! | [`Task::MaskedLm`] | `{"text"}` | `run_mlm` + `DataCollatorForLanguageModeling` |
//!
//! A bad line (invalid JSON, a missing or ill-typed field, an unknown label, an empty text, a
//! line over [`MAX_LINE_BYTES`]) is skipped and recorded in [`Dataset::skipped`] with its
//! 1-based number; a file with no usable line is an [`Error::Data`].

mod batch;
mod encode;
mod labels;
mod mask;
mod qa;
mod read;
mod records;

use std::path::Path;

use deberta::{DebertaV2Config, HeadKind};
use deberta_tokenizer::Tokenizer;

pub use batch::{Batch, BatchLabels, LabelTensors};
pub use labels::{apply_label_set, label_set_from, LabelSet, ProblemType, Target};
pub use mask::MaskingSeed;
pub use qa::{qa_predictions, qa_predictions_with, QaPostOptions};
pub use read::{MAX_FILE_BYTES, MAX_LINE_BYTES};

use crate::{Error, Result};

/// The task a data file trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    SequenceClassification,
    TokenClassification,
    QuestionAnswering,
    MultipleChoice,
    MaskedLm,
}

impl Task {
    /// The task of a model class; the bare model has none.
    pub fn from_head(kind: HeadKind) -> Result<Task> {
        Ok(match kind {
            HeadKind::SequenceClassification => Task::SequenceClassification,
            HeadKind::TokenClassification => Task::TokenClassification,
            HeadKind::QuestionAnswering => Task::QuestionAnswering,
            HeadKind::MultipleChoice => Task::MultipleChoice,
            HeadKind::MaskedLm => Task::MaskedLm,
            HeadKind::Base => {
                return Err(Error::invalid(
                    "the bare model (DebertaV2Model) has no head to train; choose a task",
                ))
            }
        })
    }

    /// The model class that trains this task.
    pub fn head(self) -> HeadKind {
        match self {
            Task::SequenceClassification => HeadKind::SequenceClassification,
            Task::TokenClassification => HeadKind::TokenClassification,
            Task::QuestionAnswering => HeadKind::QuestionAnswering,
            Task::MultipleChoice => HeadKind::MultipleChoice,
            Task::MaskedLm => HeadKind::MaskedLm,
        }
    }

    /// Whether the task has a label set (`id2label`).
    pub fn has_label_set(self) -> bool {
        matches!(
            self,
            Task::SequenceClassification | Task::TokenClassification
        )
    }
}

/// How data files are tokenised.
#[derive(Debug, Clone, PartialEq)]
pub struct DataOptions {
    /// Tokens per sequence, special tokens included (`max_seq_length`); 128.
    pub max_length: usize,
    /// Overlap of consecutive question-answering windows (`doc_stride`); 128. It must be
    /// smaller than `max_length` (run_qa uses 384 with 128).
    pub doc_stride: usize,
    /// Share of tokens masked-LM batches select (`mlm_probability`); 0.15.
    pub mlm_probability: f64,
    /// `--labels a,b,c`: the label set, in id order.
    pub labels: Option<Vec<String>>,
    /// Longest answer, in tokens, that question-answering post-processing keeps; 30.
    pub max_answer_length: usize,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            max_length: 128,
            doc_stride: 128,
            mlm_probability: 0.15,
            labels: None,
            max_answer_length: 30,
        }
    }
}

/// A skipped line of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, naming the field.
    pub message: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One tokenised sequence (before padding).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequence {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    /// 1 for `[CLS]`, `[SEP]` and special tokens in the text (never masked by masked LM).
    pub special_tokens_mask: Vec<u32>,
}

impl Sequence {
    fn from_encoding(e: &deberta_tokenizer::Encoding) -> Self {
        Self {
            input_ids: e.input_ids.clone(),
            token_type_ids: e.token_type_ids.clone(),
            special_tokens_mask: e.special_tokens_mask.clone(),
        }
    }
}

/// One model input: an example, or a window of one (question answering), or a packed block
/// of texts (masked LM).
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// One sequence; one per choice for multiple choice.
    pub sequences: Vec<Sequence>,
    pub target: Target,
    /// Index into the examples (masked LM: the text the block starts in).
    pub example: usize,
    /// Token classification: `(token position, word index)` of the first sub-token of every
    /// word in the feature, in order (the positions whose label is not -100).
    pub word_starts: Vec<(usize, usize)>,
    /// Question answering: the character offsets into the context of each token of the
    /// context, `None` for the question and special tokens (run_qa's eval `offset_mapping`).
    pub context_offsets: Vec<Option<(usize, usize)>>,
}

/// A token-classification example: its words and gold tags (label names), for seqeval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExample {
    pub words: Vec<String>,
    pub tags: Vec<String>,
}

/// A question-answering example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaExample {
    pub id: Option<String>,
    pub question: String,
    pub context: String,
    /// Gold answers (the first is the one training features point at); empty when the
    /// question has no answer in the context (SQuAD v2).
    pub answers: Vec<QaAnswer>,
}

/// A gold answer: its text and its first character in the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaAnswer {
    pub text: String,
    pub start: usize,
}

/// What evaluation needs beyond the features.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Examples {
    /// The 1-based line of each example.
    pub lines: Vec<usize>,
    /// Token classification: every example's words and gold tags.
    pub tokens: Vec<TokenExample>,
    /// Question answering: every example.
    pub qa: Vec<QaExample>,
}

/// Masked-LM settings of a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlmSettings {
    /// `[MASK]`.
    pub mask_id: u32,
    /// Random replacements are drawn from `0..vocab_len` (`len(tokenizer)`, at most the
    /// config's `vocab_size`).
    pub vocab_len: u32,
    pub probability: f64,
}

/// A data file, tokenised.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub task: Task,
    pub features: Vec<Feature>,
    pub examples: Examples,
    pub skipped: Vec<BadLine>,
    /// The label set of sequence and token classification.
    pub labels: Option<LabelSet>,
    /// The padding id.
    pub pad_id: u32,
    /// Masked LM only.
    pub mlm: Option<MlmSettings>,
    /// For [`qa_predictions`].
    pub max_answer_length: usize,
}

impl Dataset {
    /// Number of features (what batches index).
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// True when there are no features.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Number of examples (lines used).
    pub fn num_examples(&self) -> usize {
        self.examples.lines.len()
    }
}

/// Reads and tokenises a data file of `task`.
///
/// The label set of classification is `opts.labels`, else the config's labels when it carries
/// them (after [`apply_label_set`]; a label outside them is then a bad line), else it is
/// chosen from this file as [`label_set_from`] does.
pub fn load_jsonl(
    path: &Path,
    task: Task,
    tokenizer: &Tokenizer,
    config: &DebertaV2Config,
    opts: &DataOptions,
) -> Result<Dataset> {
    check_options(task, opts)?;
    let (records, mut skipped) = records::read_records(path, task)?;
    let label_set = if task.has_label_set() {
        let raws = labels::raw_labels(&records);
        Some(labels::choose(task, config, opts, &raws, true)?)
    } else {
        None
    };
    let mut ds = Dataset {
        task,
        features: Vec::new(),
        examples: Examples::default(),
        skipped: Vec::new(),
        labels: label_set,
        pad_id: tokenizer.special_ids().pad.0,
        mlm: None,
        max_answer_length: opts.max_answer_length,
    };
    let mut enc = encode::Encoder::new(tokenizer, opts);
    if task == Task::MaskedLm {
        ds.mlm = Some(mask::settings(tokenizer, config, opts)?);
        encode::pack_texts(&mut enc, records, &mut ds, &mut skipped)?;
    } else {
        for (line, record) in records {
            if let Err(message) = enc.add(&mut ds, line, record) {
                skipped.push(BadLine { line, message });
            }
        }
    }
    skipped.sort_by_key(|b| b.line);
    ds.skipped = skipped;
    if ds.features.is_empty() {
        return Err(no_usable_line(path, &ds.skipped));
    }
    if !ds.skipped.is_empty() {
        tracing::warn!(
            "{}: skipped {} bad line(s); the first: {}",
            path.display(),
            ds.skipped.len(),
            ds.skipped
                .first()
                .map(|b| b.to_string())
                .unwrap_or_default()
        );
    }
    Ok(ds)
}

fn no_usable_line(path: &Path, skipped: &[BadLine]) -> Error {
    let detail = match skipped.first() {
        Some(first) => format!("; {} bad line(s), the first: {first}", skipped.len()),
        None => String::new(),
    };
    Error::Data {
        path: path.display().to_string(),
        message: format!("no usable example{detail}"),
    }
}

fn check_options(task: Task, opts: &DataOptions) -> Result<()> {
    if opts.max_length < 4 {
        return Err(Error::invalid(format!(
            "max_length {} is too short (at least 4: [CLS], [SEP] and tokens)",
            opts.max_length
        )));
    }
    if task == Task::QuestionAnswering && opts.doc_stride >= opts.max_length {
        return Err(Error::invalid(format!(
            "doc_stride {} must be smaller than max_length {} (run_qa uses max_length 384 with \
             doc_stride 128)",
            opts.doc_stride, opts.max_length
        )));
    }
    if !(0.0..=1.0).contains(&opts.mlm_probability) {
        return Err(Error::invalid(format!(
            "mlm_probability {} is not in [0, 1]",
            opts.mlm_probability
        )));
    }
    if opts.max_answer_length == 0 {
        return Err(Error::invalid("max_answer_length must be at least 1"));
    }
    Ok(())
}
