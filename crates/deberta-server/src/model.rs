//! The one model a server runs: its head, the task pipelines that head can serve (sharing the
//! weights), and the limits that follow from the model.

use deberta::HeadKind;
use deberta_tasks::{
    Engine, EngineOptions, FillMask, MultipleChoice, QuestionAnswering, TextClassification,
    TokenClassification, ZeroShot,
};
use deberta_tokenizer::Side;

use crate::error::{ApiError, ServerError};

/// How a request wants inputs over the maximum length handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Tokenize in full (inputs over the limit are then refused).
    Strict,
    /// Truncate to the maximum input length at this end.
    Truncate(Side),
}

/// One pipeline per truncation policy, all on the same weights.
pub(crate) struct ByPolicy<T> {
    strict: T,
    right: T,
    left: T,
}

impl<T> ByPolicy<T> {
    fn new(
        engines: &Engines,
        make: impl Fn(Engine) -> Result<T, deberta_tasks::Error>,
    ) -> Result<Self, ServerError> {
        Ok(ByPolicy {
            strict: make(engines.strict.clone())?,
            right: make(engines.right.clone())?,
            left: make(engines.left.clone())?,
        })
    }

    pub(crate) fn get(&self, policy: Policy) -> &T {
        match policy {
            Policy::Strict => &self.strict,
            Policy::Truncate(Side::Right) => &self.right,
            Policy::Truncate(Side::Left) => &self.left,
        }
    }
}

/// The pipelines of the loaded head.
pub(crate) enum Tasks {
    /// `DebertaV2ForSequenceClassification`: `/predict`, `/rerank`, `/zero-shot`.
    Sequence {
        predict: ByPolicy<TextClassification>,
        zero_shot: ZeroShot,
    },
    /// `DebertaV2ForMaskedLM`: `/fill-mask`.
    MaskedLm(ByPolicy<FillMask>),
    /// `DebertaV2ForTokenClassification`: `/token-classify`.
    Token(TokenClassification),
    /// `DebertaV2ForQuestionAnswering`: `/qa`.
    Qa(QuestionAnswering),
    /// `DebertaV2ForMultipleChoice`: `/choice`.
    Choice(ByPolicy<MultipleChoice>),
}

/// Engine clones with the settings each policy needs.
struct Engines {
    strict: Engine,
    right: Engine,
    left: Engine,
    windows: Engine,
}

/// A loaded model ready to serve.
pub struct Model {
    kind: HeadKind,
    tasks: Tasks,
    engine: Engine,
    max_input_length: usize,
    dtype: String,
}

impl Model {
    /// Wraps a loaded engine. `dtype` is the name `/info` reports; `max_input_length`
    /// defaults to the tokenizer's `model_max_length`, else `max_position_embeddings`.
    pub fn new(
        engine: Engine,
        dtype: &str,
        max_input_length: Option<usize>,
    ) -> Result<Self, ServerError> {
        let kind = engine.model().kind();
        // The fused weights (and the measured kernel choice) now, not on the first request.
        engine.model().prepare().map_err(|e| {
            ServerError::config("--model", format!("preparing the fused CPU weights: {e}"))
        })?;
        let max_input_length = max_input_length.unwrap_or_else(|| default_max_length(&engine));
        let engines = engines(&engine, max_input_length);
        let tasks = match kind {
            HeadKind::Base => {
                return Err(ServerError::config(
                    "--head",
                    "the model has no task head (DebertaV2Model); pick one with --head",
                ))
            }
            HeadKind::SequenceClassification => Tasks::Sequence {
                predict: ByPolicy::new(&engines, |e| Ok(TextClassification::new(e)))?,
                zero_shot: ZeroShot::new(engines.windows.clone()),
            },
            HeadKind::MaskedLm => Tasks::MaskedLm(ByPolicy::new(&engines, FillMask::new)?),
            HeadKind::TokenClassification => {
                Tasks::Token(TokenClassification::new(engines.windows.clone()))
            }
            HeadKind::QuestionAnswering => {
                Tasks::Qa(QuestionAnswering::new(engines.windows.clone()))
            }
            HeadKind::MultipleChoice => {
                Tasks::Choice(ByPolicy::new(&engines, |e| Ok(MultipleChoice::new(e)))?)
            }
        };
        Ok(Model {
            kind,
            tasks,
            engine: engines.strict,
            max_input_length,
            dtype: dtype.to_string(),
        })
    }

    /// The head.
    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// The longest input in tokens.
    pub fn max_input_length(&self) -> usize {
        self.max_input_length
    }

    /// The compute type name.
    pub fn dtype(&self) -> &str {
        &self.dtype
    }

    /// The engine (model, tokenizer) without truncation.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// The 422 of a route the loaded head cannot serve.
    pub(crate) fn wrong_head(&self, route: &str, needs: HeadKind) -> ApiError {
        ApiError::validation(format!(
            "`{route}` needs a {} model ({}); this server runs a {} model ({})",
            needs.cli_name(),
            needs.class_name(),
            self.kind.cli_name(),
            self.kind.class_name(),
        ))
    }
}

fn engines(engine: &Engine, max_input_length: usize) -> Engines {
    let with = |max_length: Option<usize>, side: Option<Side>| {
        engine.clone().with_options(EngineOptions {
            // The batcher forms the batches; one call of `Engine::run` is one forward pass.
            batch_size: usize::MAX,
            max_length,
            truncation_side: side,
        })
    };
    Engines {
        strict: with(None, None),
        right: with(Some(max_input_length), Some(Side::Right)),
        left: with(Some(max_input_length), Some(Side::Left)),
        windows: with(Some(max_input_length), None),
    }
}

fn default_max_length(engine: &Engine) -> usize {
    deberta_tasks::util::model_max_length(engine.tokenizer())
        .unwrap_or(engine.model().config().max_position_embeddings)
}
