//! OpenAPI schemas of the task outputs. The answers are `deberta_tasks`' own types; these
//! structs only describe their JSON for the OpenAPI document (same field names and types).
#![allow(dead_code)]

use utoipa::ToSchema;

/// One fill-mask prediction.
#[derive(ToSchema)]
pub struct FillMaskPrediction {
    /// Probability of the token at this mask.
    score: f64,
    /// Token id.
    token: u32,
    /// The token, decoded.
    token_str: String,
    /// The input with this token in place of the mask.
    sequence: String,
}

/// A zero-shot answer.
#[derive(ToSchema)]
pub struct ZeroShotOutput {
    /// The input text.
    sequence: String,
    /// Labels, most likely first.
    labels: Vec<String>,
    /// Their scores.
    scores: Vec<f64>,
}

/// One entity: `entity` and `index` with aggregation `none`, `entity_group` otherwise.
#[derive(ToSchema)]
pub struct Entity {
    /// Label (aggregation `none`).
    entity: Option<String>,
    /// Entity type without B-/I- (other aggregations).
    entity_group: Option<String>,
    /// Probability.
    score: f64,
    /// Token index (aggregation `none`).
    index: Option<usize>,
    /// The token or the words of the group.
    word: String,
    /// Character start in the text.
    start: usize,
    /// Character end in the text.
    end: usize,
}

/// One answer span.
#[derive(ToSchema)]
pub struct Answer {
    /// Probability of the span.
    score: f64,
    /// Character start in the context.
    start: usize,
    /// Character end in the context.
    end: usize,
    /// The answer text.
    answer: String,
}

/// One scored choice.
#[derive(ToSchema)]
pub struct ScoredChoice {
    /// Position in `choices`.
    index: usize,
    /// The choice.
    choice: String,
    /// Softmax probability over the choices.
    score: f64,
}

/// A question and its context.
#[derive(ToSchema)]
pub struct QaInput {
    /// The question.
    question: String,
    /// The text holding the answer.
    context: String,
}

/// A prompt and its choices.
#[derive(ToSchema)]
pub struct ChoiceInput {
    /// The prompt.
    prompt: String,
    /// The candidate continuations or answers.
    choices: Vec<String>,
}
