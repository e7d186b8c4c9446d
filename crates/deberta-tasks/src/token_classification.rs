//! Token classification (NER) with word aggregation and long texts in overlapping windows.
//!
//! Mirrors transformers' `TokenClassificationPipeline`:
//! <https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/pipelines/token_classification.py>

use std::path::Path;

use candle_core::Device;
use deberta::HeadKind;
use deberta_tokenizer::{
    flatten_overflow, EncodeOptions, Encoding, Truncation, TruncationStrategy,
};
use serde::{Deserialize, Serialize};

use crate::engine::{run_items, Engine, Feature, Staged, UnitOutput};
use crate::error::{Error, Result};
use crate::util::{
    argmax, char_slice, model_max_length, non_empty, softmax, special_id, tokens_to_string,
};

/// How tokens are grouped into entities (`aggregation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// One entity per token.
    #[default]
    None,
    /// Adjacent tokens with the same tag form an entity (B-/I- aware).
    Simple,
    /// Words take the label of their first token.
    First,
    /// Words take the label of their averaged token scores.
    Average,
    /// Words take the label of their most confident token.
    Max,
}

impl std::str::FromStr for Aggregation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(|_| {
            Error::option(
                "aggregation_strategy",
                format!("`{s}` is not none, simple, first, average or max"),
            )
        })
    }
}

/// Options of [`TokenClassification`].
#[derive(Debug, Clone, PartialEq)]
pub struct NerOptions {
    /// Grouping of tokens into entities.
    pub aggregation: Aggregation,
    /// Entities with these labels (or groups) are dropped.
    pub ignore_labels: Vec<String>,
    /// Process texts longer than the maximum length in windows overlapping by this many
    /// tokens (not with aggregation `none`).
    pub stride: Option<usize>,
}

impl Default for NerOptions {
    fn default() -> Self {
        NerOptions {
            aggregation: Aggregation::None,
            ignore_labels: vec!["O".into()],
            stride: None,
        }
    }
}

/// One entity. `entity` and `index` for aggregation `none`, `entity_group` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Label (aggregation `none`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entity: Option<String>,
    /// Entity type without B-/I- (other aggregations).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entity_group: Option<String>,
    /// Probability (mean over the group's tokens or words).
    pub score: f64,
    /// Token index in its window (aggregation `none`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<usize>,
    /// The token, or the decoded words of the group.
    pub word: String,
    /// Character start in the text.
    pub start: usize,
    /// Character end in the text.
    pub end: usize,
}

/// The token-classification pipeline.
pub struct TokenClassification {
    engine: Engine,
    unk_id: Option<u32>,
}

/// A text tokenized into its windows, for [`Staged::finish`].
pub struct Prepared {
    text: String,
    windows: Vec<Encoding>,
}

/// A token before aggregation.
struct PreEntity {
    word: String,
    scores: Vec<f64>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

impl TokenClassification {
    /// Loads a token-classification checkpoint directory.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(Self::new(Engine::from_dir(
            dir,
            HeadKind::TokenClassification,
            device,
        )?))
    }

    /// Uses a loaded engine (its model must be a token classifier).
    pub fn new(engine: Engine) -> Self {
        let unk = engine.tokenizer().config().special.unk.clone();
        let unk_id = special_id(engine.tokenizer(), &unk, "unknown").ok();
        TokenClassification { engine, unk_id }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Finds the entities of one text.
    pub fn run(&self, text: &str, options: &NerOptions) -> Result<Vec<Entity>> {
        self.run_batch(&[text], options)
            .pop()
            .unwrap_or_else(|| Err(Error::input("text", "no input")))
    }

    /// Finds the entities of many texts; one result per text, in order.
    pub fn run_batch(&self, texts: &[&str], options: &NerOptions) -> Vec<Result<Vec<Entity>>> {
        run_items(
            &self.engine,
            self.prepare_texts(texts, options),
            <Self as Staged>::units,
            |p, out| self.post(p, out, options),
        )
    }

    fn prepare_texts(&self, texts: &[&str], options: &NerOptions) -> Vec<Result<Prepared>> {
        if let Err(e) = self.check_labels(&options.ignore_labels) {
            return texts
                .iter()
                .map(|_| Err(Error::option("ignore_labels", e.clone())))
                .collect();
        }
        texts.iter().map(|t| self.prepare(t, options)).collect()
    }

    /// Every ignored label must be a label or entity group of the model ("O" always passes).
    fn check_labels(&self, ignore: &[String]) -> std::result::Result<(), String> {
        let config = self.engine.model().config();
        let labels: Vec<String> = (0..config.num_labels())
            .map(|i| config.label_name(i))
            .collect();
        let known = |l: &str| {
            l == "O"
                || labels
                    .iter()
                    .any(|x| x == l || x.split_once('-').is_some_and(|(_, g)| g == l))
        };
        match ignore.iter().find(|l| !known(l)) {
            Some(bad) => Err(format!(
                "unknown label `{bad}` (the model has {})",
                labels.join(", ")
            )),
            None => Ok(()),
        }
    }

    fn prepare(&self, text: &str, options: &NerOptions) -> Result<Prepared> {
        non_empty("text", text)?;
        let tok = self.engine.tokenizer();
        let max = self
            .engine
            .options()
            .max_length
            .or_else(|| model_max_length(tok));
        if let (Some(stride), Some(max)) = (options.stride, max) {
            if stride >= max {
                return Err(Error::option(
                    "stride",
                    format!("{stride} must be less than the maximum length {max}"),
                ));
            }
        }
        if options.stride.is_some() && options.aggregation == Aggregation::None {
            return Err(Error::option(
                "stride",
                "needs an aggregation other than `none`",
            ));
        }
        let opts = EncodeOptions {
            truncation: max.map(|max_length| Truncation {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: options.stride.unwrap_or(0),
                side: tok.config().truncation_side,
            }),
            ..Default::default()
        };
        let enc = tok.encode(text, None, &opts)?;
        let windows = if options.stride.is_some() {
            flatten_overflow(vec![enc]).0
        } else {
            vec![Encoding {
                overflowing: Vec::new(),
                ..enc
            }]
        };
        Ok(Prepared {
            text: text.to_string(),
            windows,
        })
    }

    fn post(&self, p: &Prepared, out: &[UnitOutput], options: &NerOptions) -> Result<Vec<Entity>> {
        let mut all = Vec::new();
        for (window, o) in p.windows.iter().zip(out) {
            let pre = self.gather(&p.text, window, o)?;
            let grouped = self.aggregate(pre, options.aggregation)?;
            all.extend(grouped.into_iter().filter(|e| {
                let label = e.entity.as_ref().or(e.entity_group.as_ref());
                !label.is_some_and(|l| options.ignore_labels.contains(l))
            }));
        }
        if p.windows.len() > 1 {
            all = merge_overlapping(all);
        }
        Ok(all)
    }

    /// `gather_pre_entities`: non-special tokens with scores, offsets and the subword guess
    /// (the tokenizer has no continuing-subword prefix, so: no space just before the token).
    fn gather(&self, text: &str, w: &Encoding, o: &UnitOutput) -> Result<Vec<PreEntity>> {
        let mut pre = Vec::new();
        for (idx, &id) in w.input_ids.iter().enumerate() {
            if w.special_tokens_mask.get(idx) != Some(&0) {
                continue;
            }
            let (start, end) = w.offsets.get(idx).copied().unwrap_or((0, 0));
            let word_ref = char_slice(text, start, end);
            let mut is_subword = start > 0 && !char_slice(text, start - 1, start + 1).contains(' ');
            let mut word = self.engine.tokenizer().id_to_token(id)?;
            if Some(id) == self.unk_id {
                word = word_ref;
                is_subword = false;
            }
            pre.push(PreEntity {
                word,
                scores: softmax(o.row(idx)),
                start,
                end,
                index: idx,
                is_subword,
            });
        }
        Ok(pre)
    }

    fn label(&self, id: usize) -> String {
        self.engine.model().config().label_name(id)
    }

    fn aggregate(&self, pre: Vec<PreEntity>, how: Aggregation) -> Result<Vec<Entity>> {
        let entities: Vec<Entity> = match how {
            Aggregation::None | Aggregation::Simple => pre
                .into_iter()
                .map(|p| {
                    let best = argmax(&p.scores);
                    Entity {
                        entity: Some(self.label(best)),
                        entity_group: None,
                        score: p.scores.get(best).copied().unwrap_or(0.0),
                        index: Some(p.index),
                        word: p.word,
                        start: p.start,
                        end: p.end,
                    }
                })
                .collect(),
            _ => self.aggregate_words(pre, how)?,
        };
        if how == Aggregation::None {
            return Ok(entities);
        }
        self.group_entities(&entities)
    }

    /// `aggregate_words`: a word is a token and the subword tokens after it.
    fn aggregate_words(&self, pre: Vec<PreEntity>, how: Aggregation) -> Result<Vec<Entity>> {
        let mut words: Vec<Vec<PreEntity>> = Vec::new();
        for p in pre {
            match words.last_mut() {
                Some(group) if p.is_subword => group.push(p),
                _ => words.push(vec![p]),
            }
        }
        words.iter().map(|g| self.aggregate_word(g, how)).collect()
    }

    fn aggregate_word(&self, group: &[PreEntity], how: Aggregation) -> Result<Entity> {
        let tokens: Vec<String> = group.iter().map(|p| p.word.clone()).collect();
        let word = tokens_to_string(self.engine.tokenizer(), &tokens)?;
        let scores: Vec<f64> = match how {
            Aggregation::Max => {
                let best_of =
                    |p: &PreEntity| p.scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut best = group.first();
                for p in group {
                    if best.is_some_and(|b| best_of(p) > best_of(b)) {
                        best = Some(p);
                    }
                }
                best.map(|p| p.scores.clone()).unwrap_or_default()
            }
            Aggregation::Average => {
                let n = group.first().map_or(0, |p| p.scores.len());
                (0..n)
                    .map(|j| {
                        group.iter().filter_map(|p| p.scores.get(j)).sum::<f64>()
                            / group.len() as f64
                    })
                    .collect()
            }
            _ => group.first().map(|p| p.scores.clone()).unwrap_or_default(),
        };
        let best = argmax(&scores);
        Ok(Entity {
            entity: Some(self.label(best)),
            entity_group: None,
            score: scores.get(best).copied().unwrap_or(0.0),
            index: None,
            word,
            start: group.first().map_or(0, |p| p.start),
            end: group.last().map_or(0, |p| p.end),
        })
    }

    /// `group_entities`: adjacent entities with the same tag, a `B-` starting a new group.
    fn group_entities(&self, entities: &[Entity]) -> Result<Vec<Entity>> {
        let mut groups = Vec::new();
        let mut current: Vec<&Entity> = Vec::new();
        for e in entities {
            if let Some(last) = current.last() {
                let (bi, tag) = tag_of(e);
                let (_, last_tag) = tag_of(last);
                if tag != last_tag || bi == "B" {
                    groups.push(self.group(&current)?);
                    current.clear();
                }
            }
            current.push(e);
        }
        if !current.is_empty() {
            groups.push(self.group(&current)?);
        }
        Ok(groups)
    }

    fn group(&self, members: &[&Entity]) -> Result<Entity> {
        let label = members
            .first()
            .and_then(|e| e.entity.clone())
            .unwrap_or_default();
        let group = match label.split_once('-') {
            Some((_, rest)) => rest.to_string(),
            None => label,
        };
        let words: Vec<String> = members.iter().map(|e| e.word.clone()).collect();
        Ok(Entity {
            entity: None,
            entity_group: Some(group),
            score: members.iter().map(|e| e.score).sum::<f64>() / members.len().max(1) as f64,
            index: None,
            word: tokens_to_string(self.engine.tokenizer(), &words)?,
            start: members.first().map_or(0, |e| e.start),
            end: members.last().map_or(0, |e| e.end),
        })
    }
}

/// `get_tag`: (`B` or `I`, tag); labels without a prefix count as `I`.
impl Staged for TokenClassification {
    type Input = String;
    type Options = NerOptions;
    type Prepared = Prepared;
    type Output = Vec<Entity>;

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn prepare(&self, texts: &[String], options: &NerOptions) -> Vec<Result<Prepared>> {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.prepare_texts(&texts, options)
    }

    fn units(p: &Prepared) -> Vec<Vec<Feature>> {
        p.windows.iter().map(|w| vec![Feature::from(w)]).collect()
    }

    fn finish(
        &self,
        p: &Prepared,
        out: &[UnitOutput],
        options: &NerOptions,
    ) -> Result<Vec<Entity>> {
        self.post(p, out, options)
    }
}

fn tag_of(e: &Entity) -> (&str, &str) {
    let name = e.entity.as_deref().unwrap_or("");
    match (name.strip_prefix("B-"), name.strip_prefix("I-")) {
        (Some(tag), _) => ("B", tag),
        (_, Some(tag)) => ("I", tag),
        _ => ("I", name),
    }
}

/// `aggregate_overlapping_entities`: of entities overlapping across windows keep the longest
/// (then the most confident).
fn merge_overlapping(mut entities: Vec<Entity>) -> Vec<Entity> {
    entities.sort_by_key(|e| e.start);
    let mut out = Vec::new();
    let mut iter = entities.into_iter();
    let Some(mut previous) = iter.next() else {
        return out;
    };
    for e in iter {
        if previous.start <= e.start && e.start < previous.end {
            let len = e.end.saturating_sub(e.start);
            let prev_len = previous.end.saturating_sub(previous.start);
            if len > prev_len || (len == prev_len && e.score > previous.score) {
                previous = e;
            }
        } else {
            out.push(std::mem::replace(&mut previous, e));
        }
    }
    out.push(previous);
    out
}
