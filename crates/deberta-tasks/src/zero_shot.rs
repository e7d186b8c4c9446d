//! Zero-shot classification with an NLI model: each candidate label becomes a hypothesis.
//!
//! Mirrors transformers' `ZeroShotClassificationPipeline`:
//! <https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/pipelines/zero_shot_classification.py>

use std::path::Path;

use candle_core::Device;
use deberta::HeadKind;
use deberta_tokenizer::{EncodeOptions, Truncation, TruncationStrategy};
use serde::{Deserialize, Serialize};

use crate::engine::{run_staged, Engine, Feature, Staged, UnitOutput};
use crate::error::{Error, Result};
use crate::util::{model_max_length, non_empty, softmax};

/// Candidate labels: a list, or one comma-separated string (split and trimmed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CandidateLabels {
    /// `"a, b, c"`.
    Joined(String),
    /// `["a", "b", "c"]`.
    List(Vec<String>),
}

impl CandidateLabels {
    /// The labels as transformers parses them.
    pub fn labels(&self) -> Vec<String> {
        match self {
            CandidateLabels::List(l) => l.clone(),
            CandidateLabels::Joined(s) => s
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

/// One input. Unknown fields are rejected when deserialising (naming the field and the
/// accepted ones), the rule for every JSON input of the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotInput {
    /// The text to classify.
    #[serde(alias = "sequence")]
    pub text: String,
    /// Labels for this text (else the options' labels).
    #[serde(default)]
    pub candidate_labels: Option<CandidateLabels>,
}

/// Options of [`ZeroShot`].
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroShotOptions {
    /// Labels used when an input gives none.
    pub candidate_labels: Vec<String>,
    /// The hypothesis; `{}` is replaced by the label.
    pub hypothesis_template: String,
    /// Score each label independently (entailment vs contradiction) instead of a softmax over
    /// labels.
    pub multi_label: bool,
}

impl Default for ZeroShotOptions {
    fn default() -> Self {
        ZeroShotOptions {
            candidate_labels: Vec::new(),
            hypothesis_template: "This example is {}.".into(),
            multi_label: false,
        }
    }
}

/// The result for one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotOutput {
    /// The input text.
    pub sequence: String,
    /// Labels, most likely first.
    pub labels: Vec<String>,
    /// Their scores.
    pub scores: Vec<f64>,
}

/// The zero-shot-classification pipeline.
pub struct ZeroShot {
    engine: Engine,
    entailment: usize,
    contradiction: usize,
}

/// A text tokenized against each of its labels, for [`Staged::finish`].
pub struct Prepared {
    sequence: String,
    labels: Vec<String>,
    features: Vec<Feature>,
}

impl ZeroShot {
    /// Loads an NLI sequence-classification checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(Self::new(Engine::from_dir(
            dir,
            HeadKind::SequenceClassification,
            device,
        )?))
    }

    /// Uses a loaded engine; finds the entailment label as transformers does (the first
    /// `label2id` entry starting with "entail", case-insensitive; else the last label).
    pub fn new(engine: Engine) -> Self {
        let config = engine.model().config();
        let n = config.num_labels().max(1);
        let found = entailment_id(config);
        if found.is_none() {
            tracing::warn!("no label starting with `entail` in label2id; using the last label");
        }
        let entailment = found.unwrap_or(n - 1);
        let contradiction = if entailment == 0 { n - 1 } else { 0 };
        ZeroShot {
            engine,
            entailment,
            contradiction,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Classifies one text.
    pub fn run(&self, input: &ZeroShotInput, options: &ZeroShotOptions) -> Result<ZeroShotOutput> {
        self.run_batch(std::slice::from_ref(input), options)
            .pop()
            .unwrap_or_else(|| Err(Error::input("text", "no input")))
    }

    /// Classifies many texts; one result per text, in order.
    pub fn run_batch(
        &self,
        inputs: &[ZeroShotInput],
        options: &ZeroShotOptions,
    ) -> Vec<Result<ZeroShotOutput>> {
        run_staged(self, inputs, options)
    }

    fn prepare_one(&self, input: &ZeroShotInput, options: &ZeroShotOptions) -> Result<Prepared> {
        non_empty("text", &input.text)?;
        let labels = match &input.candidate_labels {
            Some(l) => l.labels(),
            None => options.candidate_labels.clone(),
        };
        if labels.is_empty() {
            return Err(Error::input(
                "candidate_labels",
                "at least one label is needed",
            ));
        }
        let template = &options.hypothesis_template;
        if !template.contains("{}") {
            return Err(Error::option(
                "hypothesis_template",
                format!("`{template}` has no `{{}}` where the label should go"),
            ));
        }
        let features = labels
            .iter()
            .map(|l| self.encode(&input.text, &template.replacen("{}", l, 1)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Prepared {
            sequence: input.text.clone(),
            labels,
            features,
        })
    }

    /// Truncates only the premise to the model's maximum length; when that is impossible,
    /// encodes without truncation (transformers' "too short" fallback).
    fn encode(&self, premise: &str, hypothesis: &str) -> Result<Feature> {
        let tok = self.engine.tokenizer();
        let max = self
            .engine
            .options()
            .max_length
            .or_else(|| model_max_length(tok));
        let truncated = EncodeOptions {
            truncation: max.map(|max_length| Truncation {
                max_length,
                strategy: TruncationStrategy::OnlyFirst,
                stride: 0,
                side: tok.config().truncation_side,
            }),
            ..Default::default()
        };
        let enc = match tok.encode(premise, Some(hypothesis), &truncated) {
            Ok(e) => e,
            Err(_) => tok.encode(premise, Some(hypothesis), &EncodeOptions::default())?,
        };
        Ok(Feature::from(&enc))
    }

    fn post(&self, p: &Prepared, out: &[UnitOutput], multi_label: bool) -> Result<ZeroShotOutput> {
        let logit = |o: &UnitOutput, i: usize| o.row(0).get(i).copied();
        let missing = || Error::Model("the classifier returned too few logits".into());
        let scores: Vec<f64> = if multi_label || p.labels.len() == 1 {
            out.iter()
                .map(|o| {
                    let pair = [logit(o, self.contradiction), logit(o, self.entailment)];
                    let [Some(c), Some(e)] = pair else {
                        return Err(missing());
                    };
                    Ok(softmax(&[c, e]).get(1).copied().unwrap_or(0.0))
                })
                .collect::<Result<_>>()?
        } else {
            let entail: Vec<f32> = out
                .iter()
                .map(|o| logit(o, self.entailment).ok_or_else(missing))
                .collect::<Result<_>>()?;
            softmax(&entail)
        };
        // reversed(argsort): best first, ties: later label first.
        let mut order: Vec<usize> = (0..scores.len()).collect();
        let score = |i: usize| scores.get(i).copied().unwrap_or(f64::NAN);
        order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(b.cmp(&a)));
        Ok(ZeroShotOutput {
            sequence: p.sequence.clone(),
            labels: order
                .iter()
                .filter_map(|&i| p.labels.get(i).cloned())
                .collect(),
            scores: order
                .iter()
                .filter_map(|&i| scores.get(i).copied())
                .collect(),
        })
    }
}

impl Staged for ZeroShot {
    type Input = ZeroShotInput;
    type Options = ZeroShotOptions;
    type Prepared = Prepared;
    type Output = ZeroShotOutput;

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn prepare(
        &self,
        inputs: &[ZeroShotInput],
        options: &ZeroShotOptions,
    ) -> Vec<Result<Prepared>> {
        inputs
            .iter()
            .map(|i| self.prepare_one(i, options))
            .collect()
    }

    fn units(p: &Prepared) -> Vec<Vec<Feature>> {
        p.features.iter().map(|f| vec![f.clone()]).collect()
    }

    fn finish(
        &self,
        p: &Prepared,
        out: &[UnitOutput],
        options: &ZeroShotOptions,
    ) -> Result<ZeroShotOutput> {
        self.post(p, out, options.multi_label)
    }
}

/// The first `label2id` entry (or `id2label`, when `label2id` is absent) whose name starts
/// with "entail", case-insensitive.
pub fn entailment_id(config: &deberta::DebertaV2Config) -> Option<usize> {
    let is_entail = |name: &str| name.to_lowercase().starts_with("entail");
    if let Some(map) = &config.label2id {
        return map
            .iter()
            .find(|(name, _)| is_entail(name))
            .and_then(|(_, &id)| usize::try_from(id).ok());
    }
    config
        .id2label
        .as_ref()?
        .iter()
        .find(|(_, name)| is_entail(name))
        .map(|(&id, _)| id)
}
