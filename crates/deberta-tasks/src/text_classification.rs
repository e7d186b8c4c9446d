//! Text classification of single texts and text pairs.
//!
//! Mirrors transformers' `TextClassificationPipeline`:
//! <https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/pipelines/text_classification.py>

use std::path::Path;

use candle_core::Device;
use deberta::{HeadKind, ProblemType};
use deberta_tokenizer::{EncodeOptions, Truncation, TruncationStrategy};
use serde::{Deserialize, Serialize};

use crate::engine::{run_staged, Engine, Feature, Staged, UnitOutput};
use crate::error::{Error, Result};
use crate::util::{non_empty, sigmoid, softmax};

/// The function turning logits into scores (`function_to_apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreFunction {
    /// Softmax over the labels.
    Softmax,
    /// Sigmoid of each logit.
    Sigmoid,
    /// The raw logits.
    None,
}

impl std::str::FromStr for ScoreFunction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "softmax" => Ok(ScoreFunction::Softmax),
            "sigmoid" => Ok(ScoreFunction::Sigmoid),
            "none" => Ok(ScoreFunction::None),
            other => Err(Error::option(
                "function_to_apply",
                format!("`{other}` is not softmax, sigmoid or none"),
            )),
        }
    }
}

/// How many labels to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopK {
    /// `top_k` not given: the best label only, in transformers' legacy shape (a list holding
    /// one `{label, score}` for a text, a bare `{label, score}` for a pair).
    #[default]
    Legacy,
    /// `top_k=None`: every label, best first.
    All,
    /// The `k` best labels.
    K(usize),
}

/// Options of [`TextClassification`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClassifyOptions {
    /// How many labels to return.
    pub top_k: TopK,
    /// `None`: transformers' default rule (regression: none; multi-label or one label:
    /// sigmoid; otherwise softmax).
    pub function_to_apply: Option<ScoreFunction>,
}

/// One text, or a pair (`text_pair`). Unknown fields are rejected when deserialising (naming the field and the
/// accepted ones), the rule for every JSON input of the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyInput {
    /// The text.
    pub text: String,
    /// The second text of a pair.
    #[serde(default)]
    pub text_pair: Option<String>,
}

/// A label with its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    /// Label name from `id2label`.
    pub label: String,
    /// Score after `function_to_apply`.
    pub score: f64,
}

/// The result for one input, in transformers' shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassifyOutput {
    /// A pair without `top_k`.
    One(LabelScore),
    /// Everything else.
    List(Vec<LabelScore>),
}

/// The text-classification pipeline.
pub struct TextClassification {
    engine: Engine,
}

/// An input tokenized for [`Staged::finish`].
pub struct Prepared {
    feature: Feature,
    pair: bool,
}

impl TextClassification {
    /// Loads a sequence-classification checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(Self::new(Engine::from_dir(
            dir,
            HeadKind::SequenceClassification,
            device,
        )?))
    }

    /// Uses a loaded engine (its model must be a sequence classifier).
    pub fn new(engine: Engine) -> Self {
        TextClassification { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Classifies one input.
    pub fn run(&self, input: &ClassifyInput, options: &ClassifyOptions) -> Result<ClassifyOutput> {
        self.run_batch(std::slice::from_ref(input), options)
            .pop()
            .unwrap_or_else(|| Err(Error::input("text", "no input")))
    }

    /// Classifies many inputs; one result per input, in order.
    pub fn run_batch(
        &self,
        inputs: &[ClassifyInput],
        options: &ClassifyOptions,
    ) -> Vec<Result<ClassifyOutput>> {
        run_staged(self, inputs, options)
    }

    fn prepare_one(&self, input: &ClassifyInput) -> Result<Prepared> {
        non_empty("text", &input.text)?;
        if let Some(pair) = &input.text_pair {
            non_empty("text_pair", pair)?;
        }
        let opts = EncodeOptions {
            truncation: truncation(&self.engine, None),
            ..Default::default()
        };
        let enc = self
            .engine
            .tokenizer()
            .encode(&input.text, input.text_pair.as_deref(), &opts)?;
        Ok(Prepared {
            feature: Feature::from(&enc),
            pair: input.text_pair.is_some(),
        })
    }

    fn post(
        &self,
        pair: bool,
        out: &[UnitOutput],
        options: &ClassifyOptions,
    ) -> Result<ClassifyOutput> {
        let logits = out.first().map(|o| o.row(0)).unwrap_or(&[]);
        let config = self.engine.model().config();
        let function = options
            .function_to_apply
            .unwrap_or_else(|| default_function(config));
        let scores = apply(function, logits);
        let mut labels: Vec<LabelScore> = scores
            .iter()
            .enumerate()
            .map(|(i, &score)| LabelScore {
                label: config.label_name(i),
                score,
            })
            .collect();
        if options.top_k == TopK::Legacy {
            let best = crate::util::argmax(&scores);
            let one = labels
                .into_iter()
                .nth(best)
                .ok_or_else(|| Error::Model("the classifier returned no logits".into()))?;
            return Ok(if pair {
                ClassifyOutput::One(one)
            } else {
                ClassifyOutput::List(vec![one])
            });
        }
        labels.sort_by(|a, b| b.score.total_cmp(&a.score));
        if let TopK::K(k) = options.top_k {
            labels.truncate(k);
        }
        Ok(ClassifyOutput::List(labels))
    }
}

impl Staged for TextClassification {
    type Input = ClassifyInput;
    type Options = ClassifyOptions;
    type Prepared = Prepared;
    type Output = ClassifyOutput;

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn prepare(&self, inputs: &[ClassifyInput], _: &ClassifyOptions) -> Vec<Result<Prepared>> {
        inputs.iter().map(|i| self.prepare_one(i)).collect()
    }

    fn units(p: &Prepared) -> Vec<Vec<Feature>> {
        vec![vec![p.feature.clone()]]
    }

    fn finish(
        &self,
        p: &Prepared,
        out: &[UnitOutput],
        options: &ClassifyOptions,
    ) -> Result<ClassifyOutput> {
        self.post(p.pair, out, options)
    }
}

/// transformers' default `function_to_apply`.
pub fn default_function(config: &deberta::DebertaV2Config) -> ScoreFunction {
    match config.problem_type {
        Some(ProblemType::Regression) => ScoreFunction::None,
        Some(ProblemType::MultiLabelClassification) => ScoreFunction::Sigmoid,
        _ if config.num_labels() == 1 => ScoreFunction::Sigmoid,
        _ => ScoreFunction::Softmax,
    }
}

/// Applies `function` to one row of logits.
pub fn apply(function: ScoreFunction, logits: &[f32]) -> Vec<f64> {
    match function {
        ScoreFunction::Softmax => softmax(logits),
        ScoreFunction::Sigmoid => logits.iter().map(|&x| sigmoid(x)).collect(),
        ScoreFunction::None => logits.iter().map(|&x| x as f64).collect(),
    }
}

/// Truncation to the engine's `max_length` (when set), else none: transformers' text
/// pipelines do not truncate unless asked.
pub(crate) fn truncation(
    engine: &Engine,
    strategy: Option<TruncationStrategy>,
) -> Option<Truncation> {
    engine.options().max_length.map(|max_length| Truncation {
        max_length,
        strategy: strategy.unwrap_or_default(),
        stride: 0,
        side: engine
            .options()
            .truncation_side
            .unwrap_or(engine.tokenizer().config().truncation_side),
    })
}
