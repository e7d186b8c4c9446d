//! Question answering: run_qa's `prepare_train_features` (which also carries what
//! `prepare_validation_features` keeps) and `postprocess_qa_predictions`.

use deberta_tokenizer::{flatten_overflow, TruncationStrategy};

use super::encode::{feature, Encoder};
use super::labels::Target;
use super::{Dataset, Feature, QaExample, Sequence};

/// The windows of one example: question first, context second, truncated `only_second` at
/// `max_length` with `doc_stride` overlap. Each feature's span is the answer's first and last
/// token when the (first) answer lies wholly inside its context window, else `(0, 0)` (the
/// `[CLS]` index), and its `context_offsets` keep the context tokens' character offsets.
pub(crate) fn features(
    enc: &Encoder,
    ex: &QaExample,
    example: usize,
) -> std::result::Result<Vec<Feature>, String> {
    // run_qa strips the question's leading whitespace (some questions have a lot of it).
    let question = ex.question.trim_start();
    let opts = enc.truncated_with_stride(TruncationStrategy::OnlySecond, enc.opts.doc_stride);
    let encoding = enc
        .tok
        .encode(question, Some(&ex.context), &opts)
        .map_err(|e| {
            format!(
                "`question`: does not fit in max_length {} with room for the context \
             (doc_stride {}): {e}",
                enc.opts.max_length, enc.opts.doc_stride
            )
        })?;
    let cls = enc.tok.special_ids().cls.0;
    let windows = flatten_overflow(vec![encoding]).0;
    let mut out = Vec::with_capacity(windows.len());
    for w in &windows {
        let cls_index = w.input_ids.iter().position(|&id| id == cls).unwrap_or(0) as i64;
        let is_context = |i: usize| w.sequence_ids.get(i) == Some(&Some(1));
        let (start, end) = match ex.answers.first() {
            None => (cls_index, cls_index),
            Some(a) => {
                let start_char = a.start;
                let end_char = a.start + a.text.chars().count();
                span(&w.offsets, &is_context, (start_char, end_char))
                    .unwrap_or((cls_index, cls_index))
            }
        };
        let mut f = feature(
            vec![Sequence::from_encoding(w)],
            Target::Span { start, end },
            example,
        );
        f.context_offsets = (0..w.input_ids.len())
            .map(|i| is_context(i).then(|| w.offsets.get(i).copied().unwrap_or((0, 0))))
            .collect();
        out.push(f);
    }
    Ok(out)
}

/// The answer's token span in a window, or `None` when it is not fully inside the context part.
fn span(
    offsets: &[(usize, usize)],
    is_context: &dyn Fn(usize) -> bool,
    (start_char, end_char): (usize, usize),
) -> Option<(i64, i64)> {
    let first = (0..offsets.len()).find(|&i| is_context(i))?;
    let last = (0..offsets.len()).rev().find(|&i| is_context(i))?;
    let off = |i: usize| offsets.get(i).copied().unwrap_or((0, 0));
    if !(off(first).0 <= start_char && off(last).1 >= end_char) {
        return None;
    }
    let mut s = first;
    while s < offsets.len() && off(s).0 <= start_char {
        s += 1;
    }
    let mut e = last;
    while e > 0 && off(e).1 >= end_char {
        e -= 1;
    }
    Some((s as i64 - 1, e as i64 + 1))
}

impl Encoder<'_> {
    pub(crate) fn truncated_with_stride(
        &self,
        strategy: TruncationStrategy,
        stride: usize,
    ) -> deberta_tokenizer::EncodeOptions {
        deberta_tokenizer::EncodeOptions {
            add_special_tokens: true,
            truncation: Some(deberta_tokenizer::Truncation {
                max_length: self.opts.max_length,
                strategy,
                stride,
                side: self.tok.config().truncation_side,
            }),
            padding: Default::default(),
        }
    }
}

/// Options of [`qa_predictions_with`] (run_qa's arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QaPostOptions {
    /// Candidate starts and ends per feature; 20.
    pub n_best_size: usize,
    /// Longest answer in tokens.
    pub max_answer_length: usize,
    /// SQuAD v2: the empty answer competes (`version_2_with_negative`).
    pub version_2_with_negative: bool,
    /// SQuAD v2: the empty answer wins when its score beats the best by more than this.
    pub null_score_diff_threshold: f32,
}

/// The best answer text of every example (SQuAD v1 post-processing, `n_best_size` 20 and the
/// dataset's `max_answer_length`). `start_logits[f]` / `end_logits[f]` are feature `f`'s
/// logits (padded rows are fine: positions past the feature are never chosen).
pub fn qa_predictions(
    dataset: &Dataset,
    start_logits: &[Vec<f32>],
    end_logits: &[Vec<f32>],
) -> Vec<String> {
    let opts = QaPostOptions {
        n_best_size: 20,
        max_answer_length: dataset.max_answer_length,
        version_2_with_negative: false,
        null_score_diff_threshold: 0.0,
    };
    qa_predictions_with(dataset, start_logits, end_logits, &opts)
}

#[derive(Clone, Copy)]
struct Candidate {
    offsets: (usize, usize),
    score: f32,
    start: f32,
    end: f32,
}

/// run_qa's `postprocess_qa_predictions`: over all features of an example, every start and
/// end among the `n_best_size` best of each that lie in the context, `end >= start` and at most
/// `max_answer_length` tokens apart, scored `start_logit + end_logit`; the best one's text
/// (`"empty"` when there is none, as run_qa writes).
pub fn qa_predictions_with(
    dataset: &Dataset,
    start_logits: &[Vec<f32>],
    end_logits: &[Vec<f32>],
    opts: &QaPostOptions,
) -> Vec<String> {
    let mut per_example: Vec<Vec<usize>> = vec![Vec::new(); dataset.examples.qa.len()];
    for (i, f) in dataset.features.iter().enumerate() {
        if let Some(v) = per_example.get_mut(f.example) {
            v.push(i);
        }
    }
    dataset
        .examples
        .qa
        .iter()
        .zip(&per_example)
        .map(|(ex, features)| best_answer(dataset, ex, features, start_logits, end_logits, opts))
        .collect()
}

fn best_answer(
    dataset: &Dataset,
    ex: &QaExample,
    features: &[usize],
    start_logits: &[Vec<f32>],
    end_logits: &[Vec<f32>],
    opts: &QaPostOptions,
) -> String {
    let mut prelim: Vec<Candidate> = Vec::new();
    let mut null: Option<Candidate> = None;
    for &fi in features {
        let (Some(f), Some(sl), Some(el)) = (
            dataset.features.get(fi),
            start_logits.get(fi),
            end_logits.get(fi),
        ) else {
            continue;
        };
        let (s0, e0) = (
            sl.first().copied().unwrap_or(0.0),
            el.first().copied().unwrap_or(0.0),
        );
        if null.as_ref().is_none_or(|n| n.score > s0 + e0) {
            null = Some(Candidate {
                offsets: (0, 0),
                score: s0 + e0,
                start: s0,
                end: e0,
            });
        }
        let offsets = &f.context_offsets;
        let at = |i: usize| offsets.get(i).copied().flatten();
        for &s in &top_indices(sl, opts.n_best_size) {
            for &e in &top_indices(el, opts.n_best_size) {
                let (Some(a), Some(b)) = (at(s), at(e)) else {
                    continue;
                };
                if e < s || e - s + 1 > opts.max_answer_length {
                    continue;
                }
                let (start, end) = (sl[s], el[e]);
                prelim.push(Candidate {
                    offsets: (a.0, b.1),
                    score: start + end,
                    start,
                    end,
                });
            }
        }
    }
    let null_score = null.as_ref().map(|n| n.score);
    if opts.version_2_with_negative {
        if let Some(n) = &null {
            prelim.push(*n);
        }
    }
    // Python's sort is stable: equal scores keep their order.
    prelim.sort_by(|a, b| b.score.total_cmp(&a.score));
    prelim.truncate(opts.n_best_size);
    if opts.version_2_with_negative && !prelim.iter().any(|c| c.offsets == (0, 0)) {
        if let Some(n) = null {
            prelim.push(n);
        }
    }
    let mut predictions: Vec<(String, f32)> = prelim
        .iter()
        .map(|c| (char_slice(&ex.context, c.offsets), c.start + c.end))
        .collect();
    let only_empty = predictions.len() == 1 && predictions.first().is_some_and(|p| p.0.is_empty());
    if predictions.is_empty() || only_empty {
        predictions.insert(0, ("empty".to_string(), 0.0));
    }
    if !opts.version_2_with_negative {
        return predictions
            .into_iter()
            .next()
            .map(|p| p.0)
            .unwrap_or_default();
    }
    let Some(best) = predictions.iter().find(|p| !p.0.is_empty()) else {
        return String::new();
    };
    match null_score {
        Some(ns) if ns - best.1 > opts.null_score_diff_threshold => String::new(),
        _ => best.0.clone(),
    }
}

/// `context[a:b]` in characters.
pub(crate) fn char_slice(text: &str, (a, b): (usize, usize)) -> String {
    text.chars().skip(a).take(b.saturating_sub(a)).collect()
}

/// `np.argsort(x)[-1 : -n - 1 : -1]`: the indices of the `n` largest values, largest first
/// (ties: the later index first, as a stable ascending argsort reversed gives).
fn top_indices(x: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(b.cmp(&a)));
    idx.truncate(n);
    idx
}
