//! The routes with TEI's JSON: `/predict`, `/rerank`, `/tokenize`, `/decode`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use deberta::HeadKind;
use deberta_tasks::{
    ClassifyInput, ClassifyOptions, ClassifyOutput, LabelScore, ScoreFunction, TextClassification,
    TopK,
};
use deberta_tokenizer::EncodeOptions;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::types::{check_texts, timing_headers, OneOrMany, TruncationDirection};
use crate::error::{ApiError, ErrorResponse};
use crate::infer::Call;
use crate::json::JsonBody;
use crate::model::{Model, Policy, Tasks};
use crate::state::AppState;

/// `inputs` of `/predict`: a text, a pair `[text, text]`, or a batch `[[text], [text, text]]`
/// (TEI's forms; `[text]` is one text).
#[derive(Debug, Clone)]
pub struct PredictInput(pub Vec<ClassifyInput>, pub bool);

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a string, a pair of strings [string, string] or a batch of strings \
                         and pairs [[string], [string, string], ...]"
        )]
        enum Raw {
            Text(String),
            Sequence(Vec<String>),
            Batch(Vec<Vec<String>>),
        }
        let seq = |mut v: Vec<String>| -> Result<ClassifyInput, D::Error> {
            let second = if v.len() == 2 { v.pop() } else { None };
            match (v.pop(), v.is_empty()) {
                (Some(text), true) => Ok(ClassifyInput {
                    text,
                    text_pair: second,
                }),
                _ => Err(serde::de::Error::custom(
                    "a sequence is one string or a pair of strings",
                )),
            }
        };
        Ok(match Raw::deserialize(d)? {
            Raw::Text(text) => PredictInput(
                vec![ClassifyInput {
                    text,
                    text_pair: None,
                }],
                true,
            ),
            Raw::Sequence(v) if v.is_empty() => PredictInput(Vec::new(), false),
            Raw::Sequence(v) => PredictInput(vec![seq(v)?], true),
            Raw::Batch(b) => PredictInput(b.into_iter().map(seq).collect::<Result<_, _>>()?, false),
        })
    }
}

/// `POST /predict`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PredictRequest {
    /// A text, a pair `[text, text]`, or a batch `[[text], [text, text], ...]`.
    #[schema(value_type = Object, example = json!("I like you."))]
    pub inputs: PredictInput,
    /// Truncate inputs over the maximum length (default: `--auto-truncate`).
    #[serde(default)]
    #[schema(nullable = true, example = false)]
    pub truncate: Option<bool>,
    /// Which end truncation cuts.
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// Logits instead of probabilities.
    #[serde(default)]
    pub raw_scores: bool,
}

/// A label and its score.
#[derive(Debug, Serialize, ToSchema)]
pub struct Prediction {
    /// Probability (softmax over labels; sigmoid for a single label), or the logit.
    #[schema(example = 0.9)]
    pub score: f64,
    /// The label name.
    #[schema(example = "entailment")]
    pub label: String,
}

/// Every label, best first; a list of those for a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
    /// One input.
    Single(Vec<Prediction>),
    /// A batch.
    Batch(Vec<Vec<Prediction>>),
}

fn pick_classifier<'a>(
    m: &'a Model,
    p: Policy,
    route: &'static str,
) -> Result<&'a TextClassification, ApiError> {
    match m.tasks() {
        Tasks::Sequence { predict, .. } => Ok(predict.get(p)),
        _ => Err(m.wrong_head(route, HeadKind::SequenceClassification)),
    }
}

fn pick_predict(m: &Model, p: Policy) -> Result<&TextClassification, ApiError> {
    pick_classifier(m, p, "/predict")
}

fn pick_rerank(m: &Model, p: Policy) -> Result<&TextClassification, ApiError> {
    pick_classifier(m, p, "/rerank")
}

/// Classifies a text or text pair (every label, best first).
#[utoipa::path(post, path = "/predict", tag = "TEI", request_body = PredictRequest,
    responses(
        (status = 200, description = "Predictions", body = PredictResponse),
        (status = 400, description = "Empty input", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more inputs than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "Validation or tokenizer error (input too long, wrong head, malformed JSON)", body = ErrorResponse),
        (status = 424, description = "Inference failed", body = ErrorResponse),
        (status = 429, description = "Model is overloaded", body = ErrorResponse),
    ))]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<PredictRequest>,
) -> Result<(HeaderMap, Json<PredictResponse>), ApiError> {
    let PredictInput(inputs, single) = req.inputs;
    check_texts(
        "inputs",
        inputs
            .iter()
            .flat_map(|i| std::iter::once(i.text.as_str()).chain(i.text_pair.as_deref())),
    )?;
    state.infer.check_batch("inputs", inputs.len())?;
    let chars = inputs
        .iter()
        .map(|i| i.text.chars().count() + i.text_pair.as_ref().map_or(0, |p| p.chars().count()))
        .sum();
    let options = ClassifyOptions {
        top_k: TopK::All,
        function_to_apply: req.raw_scores.then_some(ScoreFunction::None),
    };
    let truncate = state.truncate(req.truncate, req.truncation_direction.into());
    let call = Call {
        inputs,
        options,
        truncate,
    };
    let (outputs, timings) = state.infer.run(&state.model, pick_predict, call).await?;
    let mut lists: Vec<Vec<Prediction>> = outputs.into_iter().map(predictions).collect();
    let body = match (single, lists.pop()) {
        (true, Some(one)) => PredictResponse::Single(one),
        (_, last) => {
            lists.extend(last);
            PredictResponse::Batch(lists)
        }
    };
    Ok((timing_headers(&timings, chars), Json(body)))
}

fn predictions(out: ClassifyOutput) -> Vec<Prediction> {
    let list = match out {
        ClassifyOutput::One(one) => vec![one],
        ClassifyOutput::List(list) => list,
    };
    list.into_iter()
        .map(|LabelScore { label, score }| Prediction { score, label })
        .collect()
}

/// `POST /rerank`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RerankRequest {
    /// The query.
    #[schema(example = "What is Deep Learning?")]
    pub query: String,
    /// The texts to rank against the query.
    #[schema(example = json!(["Deep Learning is ..."]))]
    pub texts: Vec<String>,
    /// Truncate pairs over the maximum length (default: `--auto-truncate`).
    #[serde(default)]
    #[schema(nullable = true, example = false)]
    pub truncate: Option<bool>,
    /// Which end truncation cuts.
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    /// The logit instead of its sigmoid.
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text in the response.
    #[serde(default)]
    pub return_text: bool,
}

/// One ranked text.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rank {
    /// Position in `texts`.
    pub index: usize,
    /// The text (with `return_text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Relevance: sigmoid of the logit, or the logit with `raw_scores`.
    pub score: f64,
}

/// Scores (query, text) pairs with a one-label sequence classifier (a cross-encoder), best
/// first.
#[utoipa::path(post, path = "/rerank", tag = "TEI", request_body = RerankRequest,
    responses(
        (status = 200, description = "Ranks, best first", body = Vec<Rank>),
        (status = 400, description = "Empty query or texts", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more texts than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "Validation or tokenizer error (not a one-label classifier, input too long)", body = ErrorResponse),
        (status = 424, description = "Inference failed", body = ErrorResponse),
        (status = 429, description = "Model is overloaded", body = ErrorResponse),
    ))]
pub async fn rerank(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<RerankRequest>,
) -> Result<(HeaderMap, Json<Vec<Rank>>), ApiError> {
    check_texts("query", [req.query.as_str()])?;
    check_texts("texts", req.texts.iter().map(String::as_str))?;
    state.infer.check_batch("texts", req.texts.len())?;
    let labels = state.model.engine().model().config().num_labels();
    if labels != 1 {
        return Err(ApiError::validation(format!(
            "`/rerank` needs a sequence classifier with one label (a reranker); this model has {labels}"
        )));
    }
    let q = req.query.chars().count();
    let chars = req.texts.iter().map(|t| q + t.chars().count()).sum();
    let inputs = req
        .texts
        .iter()
        .map(|t| ClassifyInput {
            text: req.query.clone(),
            text_pair: Some(t.clone()),
        })
        .collect();
    let function = if req.raw_scores {
        ScoreFunction::None
    } else {
        ScoreFunction::Sigmoid
    };
    let options = ClassifyOptions {
        top_k: TopK::All,
        function_to_apply: Some(function),
    };
    let truncate = state.truncate(req.truncate, req.truncation_direction.into());
    let call = Call {
        inputs,
        options,
        truncate,
    };
    let (outputs, timings) = state.infer.run(&state.model, pick_rerank, call).await?;
    let mut ranks: Vec<Rank> = outputs
        .into_iter()
        .enumerate()
        .map(|(index, out)| Rank {
            index,
            text: req
                .return_text
                .then(|| req.texts.get(index).cloned())
                .flatten(),
            score: predictions(out).first().map_or(f64::NAN, |p| p.score),
        })
        .collect();
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok((timing_headers(&timings, chars), Json(ranks)))
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenizeRequest {
    /// A text or a list of texts.
    #[schema(value_type = Object, example = json!("test"))]
    pub inputs: OneOrMany<String>,
    /// Add `[CLS]` and `[SEP]`.
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
}

fn yes() -> bool {
    true
}

/// One token.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimpleToken {
    /// Token id.
    pub id: u32,
    /// The text it covers (the token itself for special tokens).
    pub text: String,
    /// Whether it is a special token.
    pub special: bool,
    /// Byte offset of its start in the input (none for special tokens).
    pub start: Option<usize>,
    /// Byte offset of its end (none for special tokens).
    pub stop: Option<usize>,
}

/// Tokenizes texts; always a list (one list of tokens per text).
#[utoipa::path(post, path = "/tokenize", tag = "TEI", request_body = TokenizeRequest,
    responses(
        (status = 200, description = "Tokens of each text", body = Vec<Vec<SimpleToken>>),
        (status = 400, description = "Empty batch", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more texts than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "Tokenizer error or malformed request", body = ErrorResponse),
    ))]
pub async fn tokenize(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<TokenizeRequest>,
) -> Result<Json<Vec<Vec<SimpleToken>>>, ApiError> {
    let (texts, _) = req.inputs.into_vec();
    if texts.is_empty() {
        return Err(ApiError::empty("`inputs` cannot be empty"));
    }
    state.infer.check_batch("inputs", texts.len())?;
    let model = state.model.clone();
    let add = req.add_special_tokens;
    let out = crate::infer::blocking(move || {
        texts
            .iter()
            .map(|t| tokens_of(&model, t, add))
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Json(out))
}

fn tokens_of(model: &Model, text: &str, add_special: bool) -> Result<Vec<SimpleToken>, ApiError> {
    let opts = EncodeOptions {
        add_special_tokens: add_special,
        ..Default::default()
    };
    let enc = model.engine().tokenizer().encode(text, None, &opts)?;
    let bytes = byte_offsets(text);
    let mut out = Vec::with_capacity(enc.input_ids.len());
    for (i, &id) in enc.input_ids.iter().enumerate() {
        let special = enc.special_tokens_mask.get(i) == Some(&1);
        let (a, b) = enc.offsets.get(i).copied().unwrap_or((0, 0));
        let span = (!special).then(|| (byte_at(&bytes, a), byte_at(&bytes, b)));
        let token_text = match span {
            Some((s, e)) => text.get(s..e).unwrap_or_default().to_string(),
            None => enc.tokens.get(i).cloned().unwrap_or_default(),
        };
        out.push(SimpleToken {
            id,
            text: token_text,
            special,
            start: span.map(|s| s.0),
            stop: span.map(|s| s.1),
        });
    }
    Ok(out)
}

/// The byte offset of each character, and of the end.
fn byte_offsets(text: &str) -> Vec<usize> {
    text.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .collect()
}

fn byte_at(offsets: &[usize], char_index: usize) -> usize {
    offsets
        .get(char_index)
        .or(offsets.last())
        .copied()
        .unwrap_or(0)
}

/// `POST /decode`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DecodeRequest {
    /// Token ids, or a list of those.
    #[schema(value_type = Object, example = json!([1, 279, 2]))]
    pub ids: OneOrMany<Vec<u32>>,
    /// Leave out `[CLS]`, `[SEP]`, `[PAD]`.
    #[serde(default = "yes")]
    pub skip_special_tokens: bool,
}

/// Decodes token ids to text; always a list (one text per id list).
#[utoipa::path(post, path = "/decode", tag = "TEI", request_body = DecodeRequest,
    responses(
        (status = 200, description = "Texts", body = Vec<String>),
        (status = 400, description = "No ids", body = ErrorResponse),
        (status = 413, description = "Body over the payload limit, or more lists than --max-client-batch-size", body = ErrorResponse),
        (status = 422, description = "Tokenizer error (unknown id) or malformed request", body = ErrorResponse),
    ))]
pub async fn decode(
    State(state): State<Arc<AppState>>,
    JsonBody(req): JsonBody<DecodeRequest>,
) -> Result<Json<Vec<String>>, ApiError> {
    let lists = match req.ids {
        OneOrMany::One(ids) => vec![ids],
        OneOrMany::Many(lists) => lists,
    };
    if lists.is_empty() || lists.iter().any(Vec::is_empty) {
        return Err(ApiError::empty("`ids` cannot be empty"));
    }
    state.infer.check_batch("ids", lists.len())?;
    let tok = state.model.engine().tokenizer();
    if let Some(bad) = lists
        .iter()
        .flatten()
        .find(|&&id| tok.id_to_token(id).is_err())
    {
        return Err(ApiError::new(
            crate::error::ErrorType::Tokenizer,
            format!("unknown token id {bad}"),
        ));
    }
    let texts = lists
        .iter()
        .map(|ids| Ok(tok.decode(ids, req.skip_special_tokens)?))
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(texts))
}
