//! Extractive question answering over contexts of any length (overlapping windows).
//!
//! Mirrors transformers' `QuestionAnsweringPipeline` with a fast tokenizer. transformers 5.x
//! dropped that pipeline; this follows its last release, 4.57.6:
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/pipelines/question_answering.py>

use std::path::Path;

use candle_core::Device;
use deberta::HeadKind;
use deberta_tokenizer::{
    flatten_overflow, EncodeOptions, Encoding, Truncation, TruncationStrategy,
};
use serde::{Deserialize, Serialize};

use crate::engine::{run_staged, Engine, Feature, Staged, UnitOutput};
use crate::error::{Error, Result};
use crate::util::{char_slice, model_max_length, non_empty};

/// One question about one context. Unknown fields are rejected when deserialising (naming the field and the
/// accepted ones), the rule for every JSON input of the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaInput {
    /// The question.
    pub question: String,
    /// The text holding the answer.
    pub context: String,
}

/// Options of [`QuestionAnswering`] (transformers' defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QaOptions {
    /// Answers to return.
    pub top_k: usize,
    /// Overlap of context windows in tokens (default `min(max_seq_len / 2, 128)`).
    pub doc_stride: Option<usize>,
    /// Longest answer in tokens.
    pub max_answer_len: usize,
    /// Window length in tokens, question included (default `min(model_max_length, 384)`).
    pub max_seq_len: Option<usize>,
    /// Accepted for compatibility; like transformers with a fast tokenizer, unused.
    pub max_question_len: usize,
    /// Also consider "no answer" (the `[CLS]` score).
    pub handle_impossible_answer: bool,
    /// Widen answers to whole words.
    pub align_to_words: bool,
}

impl Default for QaOptions {
    fn default() -> Self {
        QaOptions {
            top_k: 1,
            doc_stride: None,
            max_answer_len: 15,
            max_seq_len: None,
            max_question_len: 64,
            handle_impossible_answer: false,
            align_to_words: true,
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Probability of the span (summed over windows giving the same text).
    pub score: f64,
    /// Character start in the context.
    pub start: usize,
    /// Character end in the context.
    pub end: usize,
    /// `context[start..end]`.
    pub answer: String,
}

/// transformers' shape: one answer alone, several as a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QaOutput {
    /// A single answer.
    One(Answer),
    /// Several answers, best first.
    List(Vec<Answer>),
}

/// The question-answering pipeline.
pub struct QuestionAnswering {
    engine: Engine,
}

/// A question and context tokenized into windows, for [`Staged::finish`].
pub struct Prepared {
    context: String,
    windows: Vec<Encoding>,
}

impl QuestionAnswering {
    /// Loads a question-answering checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(Self::new(Engine::from_dir(
            dir,
            HeadKind::QuestionAnswering,
            device,
        )?))
    }

    /// Uses a loaded engine (its model must be a QA model).
    pub fn new(engine: Engine) -> Self {
        QuestionAnswering { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Answers one question.
    pub fn run(&self, input: &QaInput, options: &QaOptions) -> Result<QaOutput> {
        self.run_batch(std::slice::from_ref(input), options)
            .pop()
            .unwrap_or_else(|| Err(Error::input("question", "no input")))
    }

    /// Answers many questions; one result per input, in order.
    pub fn run_batch(&self, inputs: &[QaInput], options: &QaOptions) -> Vec<Result<QaOutput>> {
        run_staged(self, inputs, options)
    }

    fn prepare_one(&self, input: &QaInput, options: &QaOptions) -> Result<Prepared> {
        non_empty("question", &input.question)?;
        non_empty("context", &input.context)?;
        let tok = self.engine.tokenizer();
        let limit = self
            .engine
            .options()
            .max_length
            .or_else(|| model_max_length(tok))
            .unwrap_or(usize::MAX);
        let max_seq_len = options.max_seq_len.unwrap_or(limit.min(384));
        let stride = options.doc_stride.unwrap_or((max_seq_len / 2).min(128));
        if stride > max_seq_len {
            return Err(Error::option(
                "doc_stride",
                format!("{stride} is larger than max_seq_len {max_seq_len}"),
            ));
        }
        let opts = EncodeOptions {
            truncation: Some(Truncation {
                max_length: max_seq_len,
                strategy: TruncationStrategy::OnlySecond,
                stride,
                side: tok.config().truncation_side,
            }),
            ..Default::default()
        };
        let enc = tok
            .encode(&input.question, Some(&input.context), &opts)
            .map_err(|e| {
                Error::input(
                    "question",
                    format!("does not fit in max_seq_len {max_seq_len} with room for the context (doc_stride {stride}): {e}"),
                )
            })?;
        Ok(Prepared {
            context: input.context.clone(),
            windows: flatten_overflow(vec![enc]).0,
        })
    }
}

impl Staged for QuestionAnswering {
    type Input = QaInput;
    type Options = QaOptions;
    type Prepared = Prepared;
    type Output = QaOutput;

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn prepare(&self, inputs: &[QaInput], options: &QaOptions) -> Vec<Result<Prepared>> {
        if let Err(e) = check(options) {
            return inputs
                .iter()
                .map(|_| Err(Error::option(&e.0, e.1.clone())))
                .collect();
        }
        inputs
            .iter()
            .map(|i| self.prepare_one(i, options))
            .collect()
    }

    fn units(p: &Prepared) -> Vec<Vec<Feature>> {
        p.windows.iter().map(|w| vec![Feature::from(w)]).collect()
    }

    fn finish(&self, p: &Prepared, out: &[UnitOutput], options: &QaOptions) -> Result<QaOutput> {
        Ok(post(p, out, options))
    }
}

fn check(o: &QaOptions) -> std::result::Result<(), (String, String)> {
    if o.top_k < 1 {
        return Err(("top_k".into(), format!("must be >= 1 (got {})", o.top_k)));
    }
    if o.max_answer_len < 1 {
        return Err((
            "max_answer_len".into(),
            format!("must be >= 1 (got {})", o.max_answer_len),
        ));
    }
    Ok(())
}

/// Spans of every window, merged by text, best first.
fn post(p: &Prepared, out: &[UnitOutput], o: &QaOptions) -> QaOutput {
    let mut min_null = 1_000_000f64;
    let mut answers: Vec<Answer> = Vec::new();
    let pre_topk = if o.align_to_words {
        o.top_k * 2 + 10
    } else {
        o.top_k
    };
    for (w, logits) in p.windows.iter().zip(out) {
        let candidate = candidates(w);
        let start = masked_softmax(&logits.start, &candidate);
        let end = masked_softmax(&logits.end, &candidate);
        let null = start.first().copied().unwrap_or(0.0) * end.first().copied().unwrap_or(0.0);
        if o.handle_impossible_answer {
            min_null = min_null.min(null);
        }
        for (s, e, score) in decode_spans(&start, &end, pre_topk, o.max_answer_len, &candidate) {
            let (a, b) = char_span(w, s, e, o.align_to_words);
            let text = char_slice(&p.context, a, b);
            match answers
                .iter_mut()
                .find(|x| x.answer.to_lowercase() == text.to_lowercase())
            {
                Some(x) => x.score += score,
                None => answers.push(Answer {
                    score,
                    start: a,
                    end: b,
                    answer: text,
                }),
            }
        }
    }
    if o.handle_impossible_answer {
        answers.push(Answer {
            score: min_null,
            start: 0,
            end: 0,
            answer: String::new(),
        });
    }
    answers.sort_by(|a, b| b.score.total_cmp(&a.score));
    answers.truncate(o.top_k);
    if answers.len() == 1 {
        if let Some(a) = answers.pop() {
            return QaOutput::One(a);
        }
    }
    QaOutput::List(answers)
}

/// Tokens that may be part of an answer: the context's, and `[CLS]`.
fn candidates(w: &Encoding) -> Vec<bool> {
    (0..w.input_ids.len())
        .map(|i| {
            w.sequence_ids.get(i) == Some(&Some(1))
                || (i == 0 && w.special_tokens_mask.first() == Some(&1))
        })
        .collect()
}

/// Softmax with non-candidates at -10000 and the `[CLS]` probability then zeroed
/// (`select_starts_ends`).
fn masked_softmax(logits: &[f32], candidate: &[bool]) -> Vec<f64> {
    let x: Vec<f32> = logits
        .iter()
        .zip(candidate)
        .map(|(&l, &c)| if c { l } else { -10000.0 })
        .collect();
    crate::util::softmax(&x)
}

/// `decode_spans`: the best `top_k` spans (start <= end < start + max_answer_len) by
/// `p_start * p_end`, then those whose ends are both candidates.
fn decode_spans(
    start: &[f64],
    end: &[f64],
    top_k: usize,
    max_answer_len: usize,
    candidate: &[bool],
) -> Vec<(usize, usize, f64)> {
    let n = start.len();
    let mut spans: Vec<(usize, f64)> = Vec::with_capacity(n * n);
    for (s, &ps) in start.iter().enumerate() {
        for e in 0..n {
            let pe = end.get(e).copied().unwrap_or(0.0);
            let inside = e >= s && e - s < max_answer_len;
            let p = if inside && s > 0 { ps * pe } else { 0.0 };
            spans.push((s * n + e, p));
        }
    }
    spans.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    spans.truncate(top_k);
    let ok = |i: usize| candidate.get(i).copied().unwrap_or(false);
    spans
        .into_iter()
        .map(|(flat, p)| (flat / n, flat % n, p))
        .filter(|&(s, e, _)| ok(s) && ok(e))
        .collect()
}

/// `get_indices`: the characters of the words the span starts and ends in, else of its
/// tokens.
fn char_span(w: &Encoding, s: usize, e: usize, align_to_words: bool) -> (usize, usize) {
    let offsets = |i: usize| w.offsets.get(i).copied().unwrap_or((0, 0));
    let words = (
        w.word_ids.get(s).copied().flatten(),
        w.word_ids.get(e).copied().flatten(),
    );
    match (align_to_words, words) {
        (true, (Some(ws), Some(we))) => (word_chars(w, ws).0, word_chars(w, we).1),
        _ => (offsets(s).0, offsets(e).1),
    }
}

/// `word_to_chars(word, sequence_index=1)` within the window.
fn word_chars(w: &Encoding, word: u32) -> (usize, usize) {
    let tokens: Vec<usize> = (0..w.input_ids.len())
        .filter(|&i| {
            w.word_ids.get(i) == Some(&Some(word)) && w.sequence_ids.get(i) == Some(&Some(1))
        })
        .collect();
    let first = tokens
        .first()
        .and_then(|&i| w.offsets.get(i))
        .map_or(0, |o| o.0);
    let last = tokens
        .last()
        .and_then(|&i| w.offsets.get(i))
        .map_or(0, |o| o.1);
    (first, last)
}
