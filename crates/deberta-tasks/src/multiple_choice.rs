//! Multiple choice: a prompt and N choices, a softmax score per choice.
//!
//! transformers has no pipeline for this; it follows `DebertaV2ForMultipleChoice`'s usage in
//! transformers' docs (each choice encoded as the pair `(prompt, choice)`, padded together,
//! logits `[1, N]`):
//! <https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py>

use std::path::Path;

use candle_core::Device;
use deberta::HeadKind;
use deberta_tokenizer::EncodeOptions;
use serde::{Deserialize, Serialize};

use crate::engine::{run_staged, Engine, Feature, Staged, UnitOutput};
use crate::error::{Error, Result};
use crate::util::{non_empty, softmax};

/// A prompt and its choices. Unknown fields are rejected when deserialising (naming the field and the
/// accepted ones), the rule for every JSON input of the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceInput {
    /// The prompt (question, sentence start).
    pub prompt: String,
    /// The candidate continuations or answers.
    pub choices: Vec<String>,
}

/// One scored choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredChoice {
    /// Position in the input's `choices`.
    pub index: usize,
    /// The choice.
    pub choice: String,
    /// Softmax probability over the choices.
    pub score: f64,
}

/// The multiple-choice pipeline.
pub struct MultipleChoice {
    engine: Engine,
}

/// A prompt tokenized with each of its choices, for [`Staged::finish`].
pub struct Prepared {
    input: ChoiceInput,
    features: Vec<Feature>,
}

impl MultipleChoice {
    /// Loads a multiple-choice checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(Self::new(Engine::from_dir(
            dir,
            HeadKind::MultipleChoice,
            device,
        )?))
    }

    /// Uses a loaded engine (its model must be a multiple-choice model).
    pub fn new(engine: Engine) -> Self {
        MultipleChoice { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Scores the choices of one prompt, best first.
    pub fn run(&self, input: &ChoiceInput) -> Result<Vec<ScoredChoice>> {
        self.run_batch(std::slice::from_ref(input))
            .pop()
            .unwrap_or_else(|| Err(Error::input("prompt", "no input")))
    }

    /// Scores many prompts; one result per prompt, in order.
    pub fn run_batch(&self, inputs: &[ChoiceInput]) -> Vec<Result<Vec<ScoredChoice>>> {
        run_staged(self, inputs, &())
    }

    fn prepare_one(&self, input: &ChoiceInput) -> Result<Prepared> {
        non_empty("prompt", &input.prompt)?;
        if input.choices.is_empty() {
            return Err(Error::input("choices", "at least one choice is needed"));
        }
        let opts = EncodeOptions {
            truncation: crate::text_classification::truncation(&self.engine, None),
            ..Default::default()
        };
        let mut features = Vec::with_capacity(input.choices.len());
        for (i, choice) in input.choices.iter().enumerate() {
            non_empty(&format!("choices[{i}]"), choice)?;
            let enc = self
                .engine
                .tokenizer()
                .encode(&input.prompt, Some(choice), &opts)?;
            features.push(Feature::from(&enc));
        }
        Ok(Prepared {
            input: input.clone(),
            features,
        })
    }
}

impl Staged for MultipleChoice {
    type Input = ChoiceInput;
    type Options = ();
    type Prepared = Prepared;
    type Output = Vec<ScoredChoice>;

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn prepare(&self, inputs: &[ChoiceInput], _: &()) -> Vec<Result<Prepared>> {
        inputs.iter().map(|i| self.prepare_one(i)).collect()
    }

    fn units(p: &Prepared) -> Vec<Vec<Feature>> {
        vec![p.features.clone()]
    }

    fn finish(&self, p: &Prepared, out: &[UnitOutput], _: &()) -> Result<Vec<ScoredChoice>> {
        Ok(post(&p.input, out))
    }
}

fn post(input: &ChoiceInput, out: &[UnitOutput]) -> Vec<ScoredChoice> {
    let scores = softmax(out.first().map(|o| o.row(0)).unwrap_or(&[]));
    let mut scored: Vec<ScoredChoice> = input
        .choices
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(index, (choice, score))| ScoredChoice {
            index,
            choice: choice.clone(),
            score,
        })
        .collect();
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored
}
