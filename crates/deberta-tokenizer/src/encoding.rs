//! Model inputs: special tokens, truncation into overlapping windows, and padding.
//!
//! Truncation follows the HF `tokenizers` library (what `DebertaV2TokenizerFast` and extractive
//! QA use): each sequence is cut into windows of the allowed length that overlap by `stride`
//! tokens, and pairs combine windows in the library's order. Where transformers' slow
//! tokenizer differs (how `longest_first` shares the budget of a pair, token type ids without
//! special tokens, a sequence too short to truncate), the [`Flavor`] selects its behaviour.

use serde::{Deserialize, Serialize};

use crate::config::Side;
use crate::error::{Error, Result};

/// The tokens of one text before special tokens, truncation and padding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEncoding {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Token strings.
    pub tokens: Vec<String>,
    /// Character offsets `(start, end)` into the text.
    pub offsets: Vec<(usize, usize)>,
    /// Word index of each token.
    pub words: Vec<Option<u32>>,
    /// 1 for tokens the backend itself flags as special.
    pub special: Vec<u32>,
}

impl RawEncoding {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn slice(&self, (start, end): (usize, usize)) -> RawEncoding {
        let r = start..end;
        RawEncoding {
            ids: self.ids.get(r.clone()).unwrap_or_default().to_vec(),
            tokens: self.tokens.get(r.clone()).unwrap_or_default().to_vec(),
            offsets: self.offsets.get(r.clone()).unwrap_or_default().to_vec(),
            words: self.words.get(r.clone()).unwrap_or_default().to_vec(),
            special: self.special.get(r).unwrap_or_default().to_vec(),
        }
    }
}

/// One encoded input (a single text or a pair), ready for the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Encoding {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// 0 for the first sequence (and its special tokens), 1 for the second.
    pub token_type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// 1 for special tokens (CLS, SEP, padding).
    pub special_tokens_mask: Vec<u32>,
    /// Token strings.
    pub tokens: Vec<String>,
    /// Character offsets into the text each token came from; `(0, 0)` for special tokens.
    pub offsets: Vec<(usize, usize)>,
    /// Word index of each token within its sequence; `None` for special tokens.
    pub word_ids: Vec<Option<u32>>,
    /// 0 / 1 for tokens of the first / second text; `None` for special tokens.
    pub sequence_ids: Vec<Option<u32>>,
    /// Further windows produced by truncation with overflow.
    #[serde(skip)]
    pub overflowing: Vec<Encoding>,
}

impl Encoding {
    /// Number of tokens (including padding).
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    fn push_raw(&mut self, raw: &RawEncoding, type_id: u32, seq: u32) {
        self.input_ids.extend_from_slice(&raw.ids);
        self.token_type_ids
            .extend(std::iter::repeat_n(type_id, raw.len()));
        self.attention_mask
            .extend(std::iter::repeat_n(1, raw.len()));
        self.special_tokens_mask.extend_from_slice(&raw.special);
        self.tokens.extend_from_slice(&raw.tokens);
        self.offsets.extend_from_slice(&raw.offsets);
        self.word_ids.extend_from_slice(&raw.words);
        self.sequence_ids
            .extend(std::iter::repeat_n(Some(seq), raw.len()));
    }

    fn push_special(&mut self, id: u32, token: &str, type_id: u32) {
        self.input_ids.push(id);
        self.token_type_ids.push(type_id);
        self.attention_mask.push(1);
        self.special_tokens_mask.push(1);
        self.tokens.push(token.to_string());
        self.offsets.push((0, 0));
        self.word_ids.push(None);
        self.sequence_ids.push(None);
    }
}

/// How to shorten inputs longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationStrategy {
    /// Remove tokens from the longer sequence first.
    #[default]
    LongestFirst,
    /// Only truncate the first sequence.
    OnlyFirst,
    /// Only truncate the second sequence.
    OnlySecond,
}

impl std::str::FromStr for TruncationStrategy {
    type Err = Error;
    /// Parses `longest_first`, `only_first` or `only_second`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "longest_first" => Ok(TruncationStrategy::LongestFirst),
            "only_first" => Ok(TruncationStrategy::OnlyFirst),
            "only_second" => Ok(TruncationStrategy::OnlySecond),
            other => Err(Error::Options(format!(
                "unknown truncation strategy {other:?} (expected longest_first, only_first or only_second)"
            ))),
        }
    }
}

/// Truncation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Maximum total length, special tokens included.
    pub max_length: usize,
    /// Which sequence(s) to shorten.
    pub strategy: TruncationStrategy,
    /// Overlap between consecutive overflow windows (0 = no overlap).
    pub stride: usize,
    /// Which end to cut.
    pub side: Side,
}

/// How to pad a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingStrategy {
    /// No padding.
    #[default]
    None,
    /// Pad to the longest encoding in the batch.
    Longest,
    /// Pad to this length.
    MaxLength(usize),
}

/// Padding settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Padding {
    /// Target length rule.
    pub strategy: PaddingStrategy,
    /// Pad at the end (right) or the start (left).
    pub side: Side,
    /// Round the target length up to a multiple of this.
    pub pad_to_multiple_of: Option<usize>,
}

/// Options for one `encode` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add `[CLS]` / `[SEP]`.
    pub add_special_tokens: bool,
    /// Truncation, if any.
    pub truncation: Option<Truncation>,
    /// Padding.
    pub padding: Padding,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            add_special_tokens: true,
            truncation: None,
            padding: Padding::default(),
        }
    }
}

/// Whose semantics to follow where transformers' slow and fast tokenizers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `DebertaV2Tokenizer` (sentencepiece).
    Slow,
    /// `DebertaV2TokenizerFast` (tokenizers).
    Fast,
}

/// Ids and strings of the tokens the engine inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialIds {
    /// `[CLS]` id and text.
    pub cls: (u32, String),
    /// `[SEP]` id and text.
    pub sep: (u32, String),
    /// `[PAD]` id and text.
    pub pad: (u32, String),
}

/// Splits `raw` into windows of at most `max_len` tokens overlapping by `stride`
/// (`Encoding::truncate` in tokenizers). The first window is the kept part.
///
/// A stride that does not fit is an error for the fast flavour (tokenizers panics); the slow
/// tokenizer ignores the stride when it returns no overflow, so the slow flavour then keeps
/// just the first window.
fn windows(
    len: usize,
    max_len: usize,
    stride: usize,
    side: Side,
    flavor: Flavor,
) -> Result<Vec<(usize, usize)>> {
    if max_len >= len {
        return Ok(vec![(0, len)]);
    }
    if max_len == 0 {
        return Ok(vec![(0, 0), (0, len)]);
    }
    if stride >= max_len && flavor == Flavor::Slow {
        return Ok(vec![match side {
            Side::Right => (0, max_len),
            Side::Left => (len - max_len, len),
        }]);
    }
    if stride >= max_len {
        return Err(Error::Options(format!(
            "stride ({stride}) must be smaller than the room left for a sequence ({max_len})"
        )));
    }
    let step = max_len - stride;
    let mut out = Vec::new();
    match side {
        Side::Right => {
            let mut start = 0;
            while start < len {
                let stop = (start + max_len).min(len);
                out.push((start, stop));
                if stop == len {
                    break;
                }
                start += step;
            }
        }
        Side::Left => {
            let mut stop = len;
            loop {
                let start = stop.saturating_sub(max_len);
                out.push((start, stop));
                if start == 0 || stop <= step {
                    break;
                }
                stop -= step;
            }
        }
    }
    Ok(out)
}

/// Target lengths of a pair under `longest_first`.
fn longest_first_lengths(n1: usize, n2: usize, max_len: usize, flavor: Flavor) -> (usize, usize) {
    match flavor {
        Flavor::Fast => {
            let mut short = n1.min(n2);
            let mut long = if short > max_len {
                short
            } else {
                short.max(max_len - short)
            };
            if short + long > max_len {
                short = max_len / 2;
                long = short + max_len % 2;
            }
            if n1 > n2 {
                (long, short)
            } else {
                (short, long)
            }
        }
        Flavor::Slow => {
            let remove = (n1 + n2).saturating_sub(max_len);
            let first = n1.abs_diff(n2).min(remove);
            let second = remove - first;
            let (r1, r2) = if n1 > n2 {
                (first + second / 2, second - second / 2)
            } else {
                (second / 2, first + second - second / 2)
            };
            (n1.saturating_sub(r1), n2.saturating_sub(r2))
        }
    }
}

type Windows = (Vec<(usize, usize)>, Vec<(usize, usize)>);

/// Windows of the first and second sequence after truncating to `budget` tokens.
fn truncate(
    n1: usize,
    n2: Option<usize>,
    budget: usize,
    t: &Truncation,
    flavor: Flavor,
) -> Result<Windows> {
    let whole2 = vec![(0, n2.unwrap_or(0))];
    let total = n1 + n2.unwrap_or(0);
    if total <= budget {
        return Ok((vec![(0, n1)], whole2));
    }
    let to_remove = total - budget;
    if budget == 0 && flavor == Flavor::Fast {
        let w2 = windows(n2.unwrap_or(0), 0, t.stride, t.side, flavor)?;
        return Ok((windows(n1, 0, t.stride, t.side, flavor)?, w2));
    }
    match (t.strategy, n2) {
        (TruncationStrategy::LongestFirst, Some(n2)) => {
            let (l1, l2) = longest_first_lengths(n1, n2, budget, flavor);
            Ok((
                windows(n1, l1, t.stride, t.side, flavor)?,
                windows(n2, l2, t.stride, t.side, flavor)?,
            ))
        }
        (TruncationStrategy::LongestFirst, None) | (TruncationStrategy::OnlyFirst, _) => {
            if n1 > to_remove {
                Ok((
                    windows(n1, n1 - to_remove, t.stride, t.side, flavor)?,
                    whole2,
                ))
            } else {
                too_short(flavor, n1, n2)
            }
        }
        (TruncationStrategy::OnlySecond, Some(n2)) => {
            if n2 > to_remove {
                Ok((
                    vec![(0, n1)],
                    windows(n2, n2 - to_remove, t.stride, t.side, flavor)?,
                ))
            } else {
                too_short(flavor, n1, Some(n2))
            }
        }
        (TruncationStrategy::OnlySecond, None) => match flavor {
            Flavor::Fast => Err(Error::Options(
                "truncation only_second needs a second sequence".into(),
            )),
            Flavor::Slow => Ok((vec![(0, n1)], whole2)),
        },
    }
}

/// transformers' slow tokenizer logs an error and leaves the input as is; tokenizers fails.
fn too_short(flavor: Flavor, n1: usize, n2: Option<usize>) -> Result<Windows> {
    match flavor {
        Flavor::Fast => Err(Error::Options(
            "the sequence to truncate is too short to respect max_length".into(),
        )),
        Flavor::Slow => Ok((vec![(0, n1)], vec![(0, n2.unwrap_or(0))])),
    }
}

/// Window pairs in the order tokenizers' `Encoding::merge_with` produces them: the kept pair
/// first, then every further first-sequence window with every second-sequence window, then
/// the kept first window with every further second-sequence window.
fn combine(w1: &[(usize, usize)], w2: &[(usize, usize)]) -> Vec<((usize, usize), (usize, usize))> {
    let (Some(&a0), Some(&b0)) = (w1.first(), w2.first()) else {
        return Vec::new();
    };
    let mut out = vec![(a0, b0)];
    for &a in w1.iter().skip(1) {
        out.extend(w2.iter().map(|&b| (a, b)));
    }
    out.extend(w2.iter().skip(1).map(|&b| (a0, b)));
    out
}

/// Number of special tokens added around one sequence or a pair.
pub fn num_special_tokens(pair: bool) -> usize {
    if pair {
        3
    } else {
        2
    }
}

/// Builds the encoding of `a` (and `b`) with special tokens, truncation windows as
/// `overflowing`; no padding.
pub fn build(
    a: &RawEncoding,
    b: Option<&RawEncoding>,
    opts: &EncodeOptions,
    specials: &SpecialIds,
    flavor: Flavor,
) -> Result<Encoding> {
    let (w1, w2) = match &opts.truncation {
        Some(t) => {
            let added = if opts.add_special_tokens {
                num_special_tokens(b.is_some())
            } else {
                0
            };
            let budget = t.max_length.checked_sub(added).ok_or_else(|| {
                Error::Options(format!(
                    "max_length {} is smaller than the {added} special tokens",
                    t.max_length
                ))
            })?;
            truncate(a.len(), b.map(RawEncoding::len), budget, t, flavor)?
        }
        None => (vec![(0, a.len())], vec![(0, b.map_or(0, RawEncoding::len))]),
    };
    let mut all = combine(&w1, &w2).into_iter().map(|(ra, rb)| {
        let sa = a.slice(ra);
        let sb = b.map(|b| b.slice(rb));
        assemble(&sa, sb.as_ref(), opts.add_special_tokens, specials, flavor)
    });
    let mut first = all.next().unwrap_or_default();
    first.overflowing = all.collect();
    Ok(first)
}

fn assemble(
    a: &RawEncoding,
    b: Option<&RawEncoding>,
    add_special: bool,
    sp: &SpecialIds,
    flavor: Flavor,
) -> Encoding {
    let mut e = Encoding::default();
    if add_special {
        e.push_special(sp.cls.0, &sp.cls.1, 0);
    }
    e.push_raw(a, 0, 0);
    if add_special {
        e.push_special(sp.sep.0, &sp.sep.1, 0);
    }
    if let Some(b) = b {
        let type_id = if add_special || flavor == Flavor::Fast {
            1
        } else {
            0
        };
        e.push_raw(b, type_id, 1);
        if add_special {
            e.push_special(sp.sep.0, &sp.sep.1, 1);
        }
    }
    e
}

/// Pads every encoding of a batch (and its overflow windows) as `padding` says.
pub fn pad_batch(batch: &mut [Encoding], padding: &Padding, pad: &(u32, String)) {
    let longest = batch.iter().map(Encoding::len).max().unwrap_or(0);
    let mut target = match padding.strategy {
        PaddingStrategy::None => return,
        PaddingStrategy::Longest => longest,
        PaddingStrategy::MaxLength(n) => n,
    };
    if let Some(m) = padding.pad_to_multiple_of.filter(|&m| m > 0) {
        if target % m != 0 {
            target = (target / m + 1) * m;
        }
    }
    for e in batch.iter_mut() {
        pad_one(e, target, padding.side, pad);
    }
}

fn pad_one(e: &mut Encoding, target: usize, side: Side, pad: &(u32, String)) {
    for o in e.overflowing.iter_mut() {
        pad_one(o, target, side, pad);
    }
    let n = target.saturating_sub(e.len());
    if n == 0 {
        return;
    }
    fn fill<T: Clone>(v: &mut Vec<T>, value: T, n: usize, side: Side) {
        match side {
            Side::Right => v.extend(std::iter::repeat_n(value, n)),
            Side::Left => {
                v.splice(0..0, std::iter::repeat_n(value, n));
            }
        }
    }
    fill(&mut e.input_ids, pad.0, n, side);
    fill(&mut e.token_type_ids, 0, n, side);
    fill(&mut e.attention_mask, 0, n, side);
    fill(&mut e.special_tokens_mask, 1, n, side);
    fill(&mut e.tokens, pad.1.clone(), n, side);
    fill(&mut e.offsets, (0, 0), n, side);
    fill(&mut e.word_ids, None, n, side);
    fill(&mut e.sequence_ids, None, n, side);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_right_and_left() {
        assert_eq!(
            windows(10, 4, 2, Side::Right, Flavor::Fast).unwrap(),
            vec![(0, 4), (2, 6), (4, 8), (6, 10)]
        );
        let f = Flavor::Fast;
        assert_eq!(
            windows(5, 4, 0, Side::Right, f).unwrap(),
            vec![(0, 4), (4, 5)]
        );
        assert_eq!(
            windows(5, 4, 0, Side::Left, f).unwrap(),
            vec![(1, 5), (0, 1)]
        );
        assert!(windows(5, 2, 2, Side::Right, f).is_err());
        assert_eq!(
            windows(5, 2, 2, Side::Left, Flavor::Slow).unwrap(),
            vec![(3, 5)]
        );
    }

    #[test]
    fn longest_first_split() {
        assert_eq!(longest_first_lengths(10, 10, 5, Flavor::Fast), (2, 3));
        assert_eq!(longest_first_lengths(10, 10, 5, Flavor::Slow), (3, 2));
        assert_eq!(longest_first_lengths(2, 10, 5, Flavor::Fast), (2, 3));
        assert_eq!(longest_first_lengths(2, 10, 5, Flavor::Slow), (2, 3));
    }
}
