//! The tasks TEI lacks, with the options and output fields of `deberta`'s subcommands (and
//! transformers' pipelines): `/fill-mask`, `/zero-shot`, `/token-classify`, `/qa`, `/choice`.
//! Each takes one input or a list; a list is answered with a list.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use deberta::HeadKind;
use deberta_tasks::{
    Aggregation, CandidateLabels, ChoiceInput, Entity, FillMask, FillMaskOptions, FillMaskOutput,
    MultipleChoice, NerOptions, QaInput, QaOptions, QaOutput, QuestionAnswering, ScoredChoice,
    TokenClassification, ZeroShot, ZeroShotInput, ZeroShotOptions, ZeroShotOutput,
};
use serde::Deserialize;
use utoipa::ToSchema;

use super::schema;
use super::types::{check_texts, timing_headers, OneOrMany, TruncationDirection};
use crate::error::{ApiError, ErrorResponse};
use crate::infer::{Call, Pick, Served};
use crate::json::JsonBody;
use crate::model::{Model, Policy, Tasks};
use crate::state::AppState;

type Answer<T> = Result<(HeaderMap, Json<OneOrMany<T>>), ApiError>;

/// Runs a call and shapes the answer like the request (one output, or a list).
async fn answer<S: Served>(
    state: &AppState,
    pick: Pick<S>,
    call: Call<S>,
    single: bool,
    chars: usize,
) -> Answer<S::Output> {
    let (outputs, timings) = state.infer.run(&state.model, pick, call).await?;
    Ok((
        timing_headers(&timings, chars),
        Json(OneOrMany::shaped(outputs, single)),
    ))
}

fn chars<'a>(texts: impl IntoIterator<Item = &'a str>) -> usize {
    texts.into_iter().map(|t| t.chars().count()).sum()
}

/// A request's texts, checked (none empty, no more than the client batch size allows), whether
/// it sent one text, and their length in characters.
fn checked_texts(
    state: &AppState,
    field: &str,
    inputs: OneOrMany<String>,
) -> Result<(Vec<String>, bool, usize), ApiError> {
    let (texts, single) = inputs.into_vec();
    check_texts(field, texts.iter().map(String::as_str))?;
    state.infer.check_batch(field, texts.len())?;
    let n = chars(texts.iter().map(String::as_str));
    Ok((texts, single, n))
}

/// `POST /fill-mask`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FillMaskRequest {
    /// A text with one or more `[MASK]`, or a list of texts.
    #[schema(value_type = Object, example = json!("The capital of France is [MASK]."))]
    pub inputs: OneOrMany<String>,
    /// Predictions per mask.
    #[serde(default = "five")]
    #[schema(default = 5)]
    pub top_k: usize,
    /// Only score these tokens.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Truncate inputs over the maximum length (default: `--auto-truncate`).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Which end truncation cuts.
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
}

fn five() -> usize {
    5
}

fn pick_fill_mask(m: &Model, p: Policy) -> Result<&FillMask, ApiError> {
    match m.tasks() {
        Tasks::MaskedLm(t) => Ok(t.get(p)),
        _ => Err(m.wrong_head("/fill-mask", HeadKind::MaskedLm)),
    }
}

/// The most likely tokens for each `[MASK]` (as `deberta fill-mask`).
#[utoipa::path(post, path = "/fill-mask", tag = "Tasks", request_body = FillMaskRequest,
    responses(
        (status = 200, description = "Per input: a list of predictions (one mask) or a list per mask", body = Vec<schema::FillMaskPrediction>),
        (status = 400, description = "Empty input", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more inputs than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "No mask, bad option, input too long, malformed JSON, or not a masked-lm model", body = ErrorResponse),
        (status = 424, description = "Inference failed", body = ErrorResponse),
        (status = 429, description = "Model is overloaded", body = ErrorResponse),
    ))]
pub async fn fill_mask(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<FillMaskRequest>,
) -> Answer<FillMaskOutput> {
    let (inputs, single, n) = checked_texts(&state, "inputs", req.inputs)?;
    let options = FillMaskOptions {
        top_k: req.top_k,
        targets: req.targets,
    };
    let truncate = state.truncate(req.truncate, req.truncation_direction.into());
    let call = Call {
        inputs,
        options,
        truncate,
    };
    answer(&state, pick_fill_mask, call, single, n).await
}

/// `POST /zero-shot`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotRequest {
    /// A text or a list of texts.
    #[schema(value_type = Object, example = json!("The match ended 3-1."))]
    pub inputs: OneOrMany<String>,
    /// The labels: a list, or one comma-separated string.
    #[schema(value_type = Object, example = json!(["sports", "politics"]))]
    pub candidate_labels: CandidateLabels,
    /// The hypothesis; `{}` is replaced by each label.
    #[serde(default = "template")]
    #[schema(default = "This example is {}.")]
    pub hypothesis_template: String,
    /// Score each label on its own (entailment vs contradiction).
    #[serde(default)]
    pub multi_label: bool,
}

fn template() -> String {
    ZeroShotOptions::default().hypothesis_template
}

fn pick_zero_shot(m: &Model, _: Policy) -> Result<&ZeroShot, ApiError> {
    match m.tasks() {
        Tasks::Sequence { zero_shot, .. } => Ok(zero_shot),
        _ => Err(m.wrong_head("/zero-shot", HeadKind::SequenceClassification)),
    }
}

/// Zero-shot classification with an NLI model (as `deberta zero-shot`). Each (text, label)
/// pair is its own model unit, so the labels of one request spread over batches.
#[utoipa::path(post, path = "/zero-shot", tag = "Tasks", request_body = ZeroShotRequest,
    responses(
        (status = 200, description = "Per input: labels and scores, best first", body = schema::ZeroShotOutput),
        (status = 400, description = "Empty input", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more inputs or labels than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "No labels, bad template, input too long, malformed JSON, or not a sequence-classification model", body = ErrorResponse),
        (status = 424, description = "Inference failed", body = ErrorResponse),
        (status = 429, description = "Model is overloaded", body = ErrorResponse),
    ))]
pub async fn zero_shot(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<ZeroShotRequest>,
) -> Answer<ZeroShotOutput> {
    let (texts, single, n) = checked_texts(&state, "inputs", req.inputs)?;
    let labels = req.candidate_labels.labels();
    check_texts("candidate_labels", labels.iter().map(String::as_str))?;
    state.infer.check_batch("candidate_labels", labels.len())?;
    let inputs = texts
        .into_iter()
        .map(|text| ZeroShotInput {
            text,
            candidate_labels: None,
        })
        .collect();
    let options = ZeroShotOptions {
        candidate_labels: labels,
        hypothesis_template: req.hypothesis_template,
        multi_label: req.multi_label,
    };
    let call = Call {
        inputs,
        options,
        truncate: None,
    };
    answer(&state, pick_zero_shot, call, single, n).await
}

/// `POST /token-classify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenClassifyRequest {
    /// A text or a list of texts.
    #[schema(value_type = Object, example = json!("My name is Wolfgang and I live in Berlin."))]
    pub inputs: OneOrMany<String>,
    /// `none`, `simple`, `first`, `average` or `max`.
    #[serde(default)]
    #[schema(value_type = String, default = "none")]
    pub aggregation_strategy: Aggregation,
    /// Labels (or entity groups) to drop.
    #[serde(default = "outside")]
    #[schema(default = json!(["O"]))]
    pub ignore_labels: Vec<String>,
    /// Texts over the maximum length run in windows overlapping by this many tokens (needs an
    /// aggregation other than `none`).
    #[serde(default)]
    pub stride: Option<usize>,
}

fn outside() -> Vec<String> {
    NerOptions::default().ignore_labels
}

fn pick_ner(m: &Model, _: Policy) -> Result<&TokenClassification, ApiError> {
    match m.tasks() {
        Tasks::Token(t) => Ok(t),
        _ => Err(m.wrong_head("/token-classify", HeadKind::TokenClassification)),
    }
}

/// Named entities / token classification (as `deberta ner`).
#[utoipa::path(post, path = "/token-classify", tag = "Tasks", request_body = TokenClassifyRequest,
    responses(
        (status = 200, description = "Per input: its entities", body = Vec<schema::Entity>),
        (status = 400, description = "Empty input", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more inputs than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "Bad option, malformed JSON, or not a token-classification model", body = ErrorResponse),
        (status = 424, description = "Inference failed", body = ErrorResponse),
        (status = 429, description = "Model is overloaded", body = ErrorResponse),
    ))]
pub async fn token_classify(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<TokenClassifyRequest>,
) -> Answer<Vec<Entity>> {
    let (inputs, single, n) = checked_texts(&state, "inputs", req.inputs)?;
    let options = NerOptions {
        aggregation: req.aggregation_strategy,
        ignore_labels: req.ignore_labels,
        stride: req.stride,
    };
    let call = Call {
        inputs,
        options,
        truncate: None,
    };
    answer(&state, pick_ner, call, single, n).await
}

/// `POST /qa`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QaRequest {
    /// `{question, context}` or a list of those.
    #[schema(value_type = Object, example = json!({"question": "Where do I live?", "context": "My name is Sarah and I live in London."}))]
    pub inputs: OneOrMany<QaInput>,
    /// Answers per question.
    #[serde(default = "one")]
    #[schema(default = 1)]
    pub top_k: usize,
    /// Overlap of context windows in tokens (default `min(max_seq_len / 2, 128)`).
    #[serde(default)]
    pub doc_stride: Option<usize>,
    /// Longest answer in tokens.
    #[serde(default = "fifteen")]
    #[schema(default = 15)]
    pub max_answer_len: usize,
    /// Window length in tokens, question included (default `min(max input length, 384)`).
    #[serde(default)]
    pub max_seq_len: Option<usize>,
    /// Accepted for compatibility; unused (as in transformers with a fast tokenizer).
    #[serde(default = "sixty_four")]
    #[schema(default = 64)]
    pub max_question_len: usize,
    /// Also consider the empty answer.
    #[serde(default)]
    pub handle_impossible_answer: bool,
}

fn one() -> usize {
    1
}
fn fifteen() -> usize {
    15
}
fn sixty_four() -> usize {
    64
}

fn pick_qa(m: &Model, _: Policy) -> Result<&QuestionAnswering, ApiError> {
    match m.tasks() {
        Tasks::Qa(t) => Ok(t),
        _ => Err(m.wrong_head("/qa", HeadKind::QuestionAnswering)),
    }
}

/// Extractive question answering over contexts of any length (as `deberta qa`).
#[utoipa::path(post, path = "/qa", tag = "Tasks", request_body = QaRequest,
    responses(
        (status = 200, description = "Per input: the answer (top_k 1) or a list of answers", body = schema::Answer),
        (status = 400, description = "Empty question or context", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more inputs than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "Bad option, question too long for the window, malformed JSON, or not a question-answering model", body = ErrorResponse),
        (status = 424, description = "Inference failed", body = ErrorResponse),
        (status = 429, description = "Model is overloaded", body = ErrorResponse),
    ))]
pub async fn qa(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<QaRequest>,
) -> Answer<QaOutput> {
    let (inputs, single) = req.inputs.into_vec();
    check_texts(
        "inputs.question",
        inputs.iter().map(|i| i.question.as_str()),
    )?;
    check_texts("inputs.context", inputs.iter().map(|i| i.context.as_str()))?;
    state.infer.check_batch("inputs", inputs.len())?;
    let n = inputs
        .iter()
        .map(|i| chars([i.question.as_str(), i.context.as_str()]))
        .sum();
    let options = QaOptions {
        top_k: req.top_k,
        doc_stride: req.doc_stride,
        max_answer_len: req.max_answer_len,
        max_seq_len: req.max_seq_len,
        max_question_len: req.max_question_len,
        handle_impossible_answer: req.handle_impossible_answer,
        align_to_words: true,
    };
    let call = Call {
        inputs,
        options,
        truncate: None,
    };
    answer(&state, pick_qa, call, single, n).await
}

/// `POST /choice`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChoiceRequest {
    /// `{prompt, choices}` or a list of those.
    #[schema(value_type = Object, example = json!({"prompt": "The sky is", "choices": ["blue.", "made of cheese."]}))]
    pub inputs: OneOrMany<ChoiceInput>,
    /// Truncate (prompt, choice) pairs over the maximum length (default: `--auto-truncate`).
    #[serde(default)]
    pub truncate: Option<bool>,
    /// Which end truncation cuts.
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
}

fn pick_choice(m: &Model, p: Policy) -> Result<&MultipleChoice, ApiError> {
    match m.tasks() {
        Tasks::Choice(t) => Ok(t.get(p)),
        _ => Err(m.wrong_head("/choice", HeadKind::MultipleChoice)),
    }
}

/// Multiple choice: a softmax score per choice, best first (as `deberta choice`).
#[utoipa::path(post, path = "/choice", tag = "Tasks", request_body = ChoiceRequest,
    responses(
        (status = 200, description = "Per input: the scored choices, best first", body = Vec<schema::ScoredChoice>),
        (status = 400, description = "Empty prompt or choice", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more inputs or choices than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "Input too long, malformed JSON, or not a multiple-choice model", body = ErrorResponse),
        (status = 424, description = "Inference failed", body = ErrorResponse),
        (status = 429, description = "Model is overloaded", body = ErrorResponse),
    ))]
pub async fn choice(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<ChoiceRequest>,
) -> Answer<Vec<ScoredChoice>> {
    let (inputs, single) = req.inputs.into_vec();
    check_texts("inputs.prompt", inputs.iter().map(|i| i.prompt.as_str()))?;
    for input in &inputs {
        check_texts("inputs.choices", input.choices.iter().map(String::as_str))?;
        state
            .infer
            .check_batch("inputs.choices", input.choices.len())?;
    }
    state.infer.check_batch("inputs", inputs.len())?;
    let n = inputs
        .iter()
        .map(|i| {
            chars(std::iter::once(i.prompt.as_str()).chain(i.choices.iter().map(String::as_str)))
        })
        .sum();
    let truncate = state.truncate(req.truncate, req.truncation_direction.into());
    let call = Call {
        inputs,
        options: (),
        truncate,
    };
    answer(&state, pick_choice, call, single, n).await
}
