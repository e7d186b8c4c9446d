//! Label sets: where they come from (`--labels`, the config's `id2label`, the training file),
//! how a label in a line maps to a target, and how a set is written into `config.json`.

use std::collections::BTreeSet;
use std::path::Path;

use deberta::DebertaV2Config;
use serde_json::Value;

use super::read::{as_index, json_type};
use super::records::{read_records, Record};
use super::{DataOptions, Task};
use crate::{Error, Result};

/// transformers' `problem_type` of a sequence classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// `single_label_classification`: one class id per example, cross-entropy.
    SingleLabel,
    /// `multi_label_classification`: a 0/1 vector per example, BCE with logits.
    MultiLabel,
    /// `regression`: `num_labels` floats per example, MSE.
    Regression,
}

impl ProblemType {
    /// The `config.json` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemType::SingleLabel => "single_label_classification",
            ProblemType::MultiLabel => "multi_label_classification",
            ProblemType::Regression => "regression",
        }
    }
}

impl From<ProblemType> for deberta::ProblemType {
    fn from(p: ProblemType) -> Self {
        match p {
            ProblemType::SingleLabel => deberta::ProblemType::SingleLabelClassification,
            ProblemType::MultiLabel => deberta::ProblemType::MultiLabelClassification,
            ProblemType::Regression => deberta::ProblemType::Regression,
        }
    }
}

impl From<deberta::ProblemType> for ProblemType {
    fn from(p: deberta::ProblemType) -> Self {
        match p {
            deberta::ProblemType::SingleLabelClassification => ProblemType::SingleLabel,
            deberta::ProblemType::MultiLabelClassification => ProblemType::MultiLabel,
            deberta::ProblemType::Regression => ProblemType::Regression,
        }
    }
}

/// The labels of a classifier; a label's id is its index in `names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet {
    pub names: Vec<String>,
    pub problem_type: ProblemType,
}

impl LabelSet {
    /// A set of distinct, non-empty names.
    pub fn new(names: Vec<String>, problem_type: ProblemType) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::invalid("a label set needs at least one label"));
        }
        let mut seen = BTreeSet::new();
        for n in &names {
            if n.trim().is_empty() {
                return Err(Error::invalid("a label name is empty"));
            }
            if !seen.insert(n.as_str()) {
                return Err(Error::invalid(format!("the label `{n}` is given twice")));
            }
        }
        Ok(Self {
            names,
            problem_type,
        })
    }

    /// Number of labels (`num_labels`).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Never true for a set made by [`LabelSet::new`].
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The id of a label name.
    pub fn id(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The labels `config.json` carries: its `id2label` when that is not transformers' default
    /// `LABEL_0..` set, or when `problem_type` is set (as [`apply_label_set`] writes it).
    /// `problem_type` falls back to regression for one label, else single-label.
    pub fn from_config(config: &DebertaV2Config) -> Option<LabelSet> {
        if is_default(config) && config.problem_type.is_none() {
            return None;
        }
        let n = config.num_labels();
        let names = (0..n).map(|i| config.label_name(i)).collect();
        let problem_type = match config.problem_type {
            Some(p) => p.into(),
            None if n == 1 => ProblemType::Regression,
            None => ProblemType::SingleLabel,
        };
        LabelSet::new(names, problem_type).ok()
    }

    fn numbered(n: usize, problem_type: ProblemType) -> Self {
        Self {
            names: (0..n).map(|i| format!("LABEL_{i}")).collect(),
            problem_type,
        }
    }
}

/// Whether `id2label` is absent or transformers' default `{i: "LABEL_i"}`.
fn is_default(config: &DebertaV2Config) -> bool {
    config
        .id2label
        .as_ref()
        .is_none_or(|m| m.iter().all(|(i, name)| *name == format!("LABEL_{i}")))
}

/// Writes `labels` into `config` as transformers' `config.json` has them: `id2label`,
/// `label2id`, `num_labels` and `problem_type`.
pub fn apply_label_set(config: &mut DebertaV2Config, labels: &LabelSet) {
    config.id2label = Some(labels.names.iter().cloned().enumerate().collect());
    config.label2id = Some(
        labels
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as i64))
            .collect(),
    );
    config.num_labels_field = Some(labels.len());
    config.problem_type = Some(labels.problem_type.into());
}

/// The label set to train `task` on from the file at `path` (`None` for tasks without one:
/// question answering, multiple choice, masked LM).
///
/// In order: `opts.labels` (`--labels a,b,c`; one name means regression, list labels in the
/// file mean multi-label); else the config's labels ([`LabelSet::from_config`]) when every label
/// of the file is one of them; else a config with `num_labels` 1 and numeric labels gives
/// regression; else the labels discovered in the file: the sorted unique names (as `run_glue`
/// and `run_ner` build `label_list`), `LABEL_0..=max` for integer ids (at least two), regression
/// when a label is a non-integral number, multi-label when labels are lists (of names, of ids,
/// or 0/1 vectors of one width).
pub fn label_set_from(
    path: &Path,
    task: Task,
    config: &DebertaV2Config,
    opts: &DataOptions,
) -> Result<Option<LabelSet>> {
    if !task.has_label_set() {
        return Ok(None);
    }
    let (records, _) = read_records(path, task)?;
    let raws = raw_labels(&records);
    choose(task, config, opts, &raws, false).map(Some)
}

/// The labels of parsed lines (tags, for token classification).
pub(crate) fn raw_labels(records: &[(usize, Record)]) -> Vec<&RawLabel> {
    let mut out = Vec::new();
    for (_, r) in records {
        match r {
            Record::Sequence { label, .. } => out.push(label),
            Record::Tokens { tags, .. } => out.extend(tags.iter()),
            _ => {}
        }
    }
    out
}

/// The label set: `strict` (loading) takes the config's labels as they are; otherwise (choosing
/// for training) only when the file's labels fit them.
pub(crate) fn choose(
    task: Task,
    config: &DebertaV2Config,
    opts: &DataOptions,
    raws: &[&RawLabel],
    strict: bool,
) -> Result<LabelSet> {
    let summary = Summary::of(raws);
    let single = |n: usize| {
        if task == Task::TokenClassification {
            ProblemType::SingleLabel
        } else if n == 1 {
            ProblemType::Regression
        } else if summary.lists {
            ProblemType::MultiLabel
        } else {
            ProblemType::SingleLabel
        }
    };
    if let Some(names) = &opts.labels {
        return LabelSet::new(names.clone(), single(names.len()));
    }
    if let Some(mut set) = LabelSet::from_config(config) {
        if config.problem_type.is_none() {
            set.problem_type = single(set.len());
        }
        if strict || summary.fits(&set) {
            return Ok(set);
        }
        tracing::warn!(
            "the labels of the data do not all appear in the config's id2label ({}); \
             using the labels found in the data",
            set.names.join(", ")
        );
    }
    if task == Task::SequenceClassification && config.num_labels() == 1 && summary.all_numbers {
        return LabelSet::new(vec![config.label_name(0)], ProblemType::Regression);
    }
    Ok(summary.discover(task))
}

/// A label as written in a line, before it is mapped by a label set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawLabel {
    Name(String),
    Number(f64),
    List(Vec<RawLabel>),
}

impl RawLabel {
    /// A string, a number, or (when `lists`) a list of strings and numbers.
    pub(crate) fn parse(v: &Value, what: &str, lists: bool) -> std::result::Result<Self, String> {
        match v {
            Value::String(s) if s.trim().is_empty() => Err(format!("`{what}` is empty")),
            Value::String(s) => Ok(RawLabel::Name(s.clone())),
            Value::Number(n) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(RawLabel::Number)
                .ok_or_else(|| format!("`{what}` is not a finite number")),
            Value::Array(items) if lists => items
                .iter()
                .enumerate()
                .map(|(i, item)| RawLabel::parse(item, &format!("{what}[{i}]"), false))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(RawLabel::List),
            other => Err(format!(
                "`{what}` must be a label name, {}a number, got {}",
                if lists { "a list, " } else { "" },
                json_type(other)
            )),
        }
    }

    fn id(&self) -> Option<usize> {
        match self {
            RawLabel::Number(f) => as_index(&Value::from(*f)),
            _ => None,
        }
    }

    /// A list of numbers in [0, 1]: a multi-hot (or soft) vector.
    fn vector(items: &[RawLabel]) -> Option<Vec<f32>> {
        items
            .iter()
            .map(|x| match x {
                RawLabel::Number(f) if (0.0..=1.0).contains(f) => Some(*f as f32),
                _ => None,
            })
            .collect()
    }
}

/// The target a label maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// No label (question answering keeps its spans, masked LM masks at batch time).
    None,
    /// A class id (sequence classification, multiple choice).
    Class(i64),
    /// `num_labels` floats.
    Regression(Vec<f32>),
    /// A 0/1 (or soft) vector of `num_labels`.
    MultiLabel(Vec<f32>),
    /// One label per token, -100 ignored.
    Tokens(Vec<i64>),
    /// Answer start and end token.
    Span { start: i64, end: i64 },
}

impl LabelSet {
    /// The target of a sequence label, or a message naming `what`.
    pub(crate) fn target(&self, raw: &RawLabel, what: &str) -> std::result::Result<Target, String> {
        let n = self.len();
        match (self.problem_type, raw) {
            (ProblemType::Regression, RawLabel::Number(v)) if n == 1 => {
                Ok(Target::Regression(vec![*v as f32]))
            }
            (ProblemType::Regression, RawLabel::List(items)) if items.len() == n => items
                .iter()
                .map(|x| match x {
                    RawLabel::Number(f) => Some(*f as f32),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Target::Regression)
                .ok_or_else(|| format!("`{what}` must be {n} numbers for regression")),
            (ProblemType::Regression, _) => Err(format!(
                "`{what}` must be {} for regression",
                if n == 1 {
                    "a number".to_string()
                } else {
                    format!("a list of {n} numbers")
                }
            )),
            (ProblemType::SingleLabel, RawLabel::List(_)) => Err(format!(
                "`{what}` is a list, but the labels are single-label ({})",
                self.names_hint()
            )),
            (ProblemType::SingleLabel, one) => {
                self.class(one, what).map(|c| Target::Class(c as i64))
            }
            (ProblemType::MultiLabel, RawLabel::List(items)) => {
                if items.len() == n {
                    if let Some(v) = RawLabel::vector(items) {
                        return Ok(Target::MultiLabel(v));
                    }
                }
                let mut v = vec![0f32; n];
                for (i, item) in items.iter().enumerate() {
                    let c = self.class(item, &format!("{what}[{i}]"))?;
                    if let Some(slot) = v.get_mut(c) {
                        *slot = 1.0;
                    }
                }
                Ok(Target::MultiLabel(v))
            }
            (ProblemType::MultiLabel, one) => {
                let c = self.class(one, what)?;
                let mut v = vec![0f32; n];
                if let Some(slot) = v.get_mut(c) {
                    *slot = 1.0;
                }
                Ok(Target::MultiLabel(v))
            }
        }
    }

    /// The class id of a name or an integer id.
    pub(crate) fn class(&self, raw: &RawLabel, what: &str) -> std::result::Result<usize, String> {
        match raw {
            RawLabel::Name(name) => self
                .id(name)
                .ok_or_else(|| format!("`{what}`: unknown label `{name}` ({})", self.names_hint())),
            RawLabel::Number(f) => match raw.id() {
                Some(id) if id < self.len() => Ok(id),
                _ => Err(format!(
                    "`{what}`: {f} is not a label id in 0..{} ({})",
                    self.len(),
                    self.names_hint()
                )),
            },
            RawLabel::List(_) => Err(format!("`{what}` must be one label, got a list")),
        }
    }

    fn names_hint(&self) -> String {
        const SHOWN: usize = 12;
        let mut s = format!("the labels are {}", {
            let shown: Vec<&str> = self.names.iter().take(SHOWN).map(String::as_str).collect();
            shown.join(", ")
        });
        if self.len() > SHOWN {
            s.push_str(&format!(", ... ({} in all)", self.len()));
        }
        s
    }
}

/// What the labels of a file look like.
#[derive(Debug, Default)]
struct Summary {
    names: BTreeSet<String>,
    max_id: Option<usize>,
    /// A number that is not a non-negative integer (outside 0/1 vectors).
    non_integral: bool,
    lists: bool,
    /// Every list is a vector of numbers in [0, 1] of this one width.
    vector_width: Option<Option<usize>>,
    all_numbers: bool,
}

impl Summary {
    fn of(raws: &[&RawLabel]) -> Self {
        let mut s = Summary {
            all_numbers: !raws.is_empty(),
            ..Default::default()
        };
        for raw in raws {
            match raw {
                RawLabel::List(items) => {
                    s.lists = true;
                    s.all_numbers = false;
                    let width = RawLabel::vector(items).map(|_| items.len());
                    s.vector_width = match s.vector_width {
                        None => Some(width),
                        Some(w) if w == width => Some(w),
                        Some(_) => Some(None),
                    };
                    items.iter().for_each(|x| s.scalar(x));
                }
                one => s.scalar(one),
            }
        }
        s
    }

    fn scalar(&mut self, raw: &RawLabel) {
        match raw {
            RawLabel::Name(n) => {
                self.all_numbers = false;
                self.names.insert(n.clone());
            }
            RawLabel::Number(_) => match raw.id() {
                Some(id) => self.max_id = Some(self.max_id.map_or(id, |m| m.max(id))),
                None => self.non_integral = true,
            },
            RawLabel::List(_) => {}
        }
    }

    /// Whether every label is one of `set`'s.
    fn fits(&self, set: &LabelSet) -> bool {
        let numeric = self.all_numbers;
        if set.problem_type == ProblemType::Regression {
            return numeric;
        }
        let vectors_fit = match self.vector_width {
            Some(Some(w)) => w == set.len() || self.max_id.is_none_or(|m| m < set.len()),
            _ => true,
        };
        self.names.iter().all(|n| set.id(n).is_some())
            && self.max_id.is_none_or(|m| m < set.len())
            && (!self.non_integral || self.lists)
            && vectors_fit
    }

    fn discover(&self, task: Task) -> LabelSet {
        let ids = |min: usize| self.max_id.map_or(min, |m| (m + 1).max(min));
        let named = |problem_type| LabelSet {
            names: self.names.iter().cloned().collect(),
            problem_type,
        };
        if task == Task::TokenClassification {
            return if self.names.is_empty() {
                LabelSet::numbered(ids(1), ProblemType::SingleLabel)
            } else {
                named(ProblemType::SingleLabel)
            };
        }
        if self.lists {
            return if !self.names.is_empty() {
                named(ProblemType::MultiLabel)
            } else if let Some(Some(w)) = self.vector_width {
                LabelSet::numbered(w, ProblemType::MultiLabel)
            } else {
                LabelSet::numbered(ids(2), ProblemType::MultiLabel)
            };
        }
        if self.non_integral {
            // Names among scores are then bad lines.
            return LabelSet::numbered(1, ProblemType::Regression);
        }
        if self.names.is_empty() {
            LabelSet::numbered(ids(2), ProblemType::SingleLabel)
        } else {
            named(ProblemType::SingleLabel)
        }
    }
}
