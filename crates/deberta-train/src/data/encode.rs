//! Records to features: tokenisation as the transformers example scripts do it.

use deberta_tokenizer::{EncodeOptions, Tokenizer, Truncation, TruncationStrategy};

use super::labels::{LabelSet, RawLabel, Target};
use super::records::Record;
use super::{BadLine, DataOptions, Dataset, Feature, Sequence, TokenExample};
use crate::{Error, Result};

/// `-100`: the label position the loss ignores.
pub(crate) const IGNORE: i64 = -100;

pub(crate) struct Encoder<'a> {
    pub tok: &'a Tokenizer,
    pub opts: &'a DataOptions,
}

impl<'a> Encoder<'a> {
    pub fn new(tok: &'a Tokenizer, opts: &'a DataOptions) -> Self {
        Self { tok, opts }
    }

    /// `truncation=True` (longest first) at `max_length`, no stride.
    fn truncated(&self, strategy: TruncationStrategy, stride: usize) -> EncodeOptions {
        EncodeOptions {
            add_special_tokens: true,
            truncation: Some(Truncation {
                max_length: self.opts.max_length,
                strategy,
                stride,
                side: self.tok.config().truncation_side,
            }),
            padding: Default::default(),
        }
    }

    /// Adds the features of one record, or says why the line is bad.
    pub fn add(
        &mut self,
        ds: &mut Dataset,
        line: usize,
        record: Record,
    ) -> std::result::Result<(), String> {
        let example = ds.examples.lines.len();
        let features = match record {
            Record::Sequence { text, pair, label } => {
                let target = label_set(ds)?.target(&label, "label")?;
                vec![self.sequence(&text, pair.as_deref(), target, example)?]
            }
            Record::Tokens { tokens, tags } => {
                let set = label_set(ds)?;
                let (feature, gold) = self.words(set, &tokens, &tags, example)?;
                ds.examples.tokens.push(TokenExample {
                    words: tokens,
                    tags: gold,
                });
                vec![feature]
            }
            Record::Qa(ex) => {
                let features = super::qa::features(self, &ex, example)?;
                ds.examples.qa.push(ex);
                features
            }
            Record::Choice {
                prompt,
                choices,
                label,
            } => vec![self.choices(&prompt, &choices, label, example)?],
            Record::Text(_) => {
                return Err("masked-LM texts are packed, not encoded one by one".into())
            }
        };
        ds.examples.lines.push(line);
        ds.features.extend(features);
        Ok(())
    }

    /// `tokenizer(text, text_pair, truncation=True, max_length)` (run_glue).
    fn sequence(
        &self,
        text: &str,
        pair: Option<&str>,
        target: Target,
        example: usize,
    ) -> std::result::Result<Feature, String> {
        let opts = self.truncated(TruncationStrategy::LongestFirst, 0);
        let e = self
            .tok
            .encode(text, pair, &opts)
            .map_err(|e| format!("`text`: {e}"))?;
        Ok(feature(vec![Sequence::from_encoding(&e)], target, example))
    }

    /// One `(prompt, choice)` pair per choice, truncated longest first (run_swag).
    fn choices(
        &self,
        prompt: &str,
        choices: &[String],
        label: usize,
        example: usize,
    ) -> std::result::Result<Feature, String> {
        let opts = self.truncated(TruncationStrategy::LongestFirst, 0);
        let sequences = choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.tok
                    .encode(prompt, Some(c), &opts)
                    .map(|e| Sequence::from_encoding(&e))
                    .map_err(|e| format!("`choices[{i}]`: {e}"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(feature(sequences, Target::Class(label as i64), example))
    }

    /// Pre-split words (`is_split_into_words=True`: each word is tokenised on its own, so the
    /// Metaspace pre-tokenizer gives each its leading `▁`), truncated to `max_length`, labelled
    /// on each word's first sub-token and -100 elsewhere (run_ner, `label_all_tokens=False`).
    fn words(
        &self,
        set: &LabelSet,
        words: &[String],
        tags: &[RawLabel],
        example: usize,
    ) -> std::result::Result<(Feature, Vec<String>), String> {
        let ids = tags
            .iter()
            .enumerate()
            .map(|(i, t)| set.class(t, &format!("tags[{i}]")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let gold = ids
            .iter()
            .map(|&i| set.names.get(i).cloned().unwrap_or_default())
            .collect();
        // (token id, special, word index) of the text, before truncation.
        let mut stream: Vec<(u32, u32, usize)> = Vec::new();
        for (w, word) in words.iter().enumerate() {
            let raw = self
                .tok
                .encode_raw(word)
                .map_err(|e| format!("`tokens[{w}]`: {e}"))?;
            stream.extend(raw.ids.iter().zip(&raw.special).map(|(&id, &s)| (id, s, w)));
        }
        let keep = self.opts.max_length.saturating_sub(2);
        if stream.len() > keep {
            match self.tok.config().truncation_side {
                deberta_tokenizer::Side::Left => {
                    stream.drain(..stream.len() - keep);
                }
                deberta_tokenizer::Side::Right => stream.truncate(keep),
            }
        }
        let special = self.tok.special_ids();
        let mut seq = Sequence::default();
        let mut labels = Vec::with_capacity(stream.len() + 2);
        let mut word_starts = Vec::new();
        seq.push(special.cls.0, 1);
        labels.push(IGNORE);
        let mut previous = None;
        for (id, s, w) in stream {
            if previous != Some(w) {
                word_starts.push((seq.input_ids.len(), w));
                labels.push(ids.get(w).map_or(IGNORE, |&c| c as i64));
            } else {
                labels.push(IGNORE);
            }
            previous = Some(w);
            seq.push(id, s);
        }
        seq.push(special.sep.0, 1);
        labels.push(IGNORE);
        let mut f = feature(vec![seq], Target::Tokens(labels), example);
        f.word_starts = word_starts;
        Ok((f, gold))
    }
}

impl Sequence {
    fn push(&mut self, id: u32, special: u32) {
        self.input_ids.push(id);
        self.token_type_ids.push(0);
        self.special_tokens_mask.push(special);
    }
}

pub(crate) fn feature(sequences: Vec<Sequence>, target: Target, example: usize) -> Feature {
    Feature {
        sequences,
        target,
        example,
        word_starts: Vec::new(),
        context_offsets: Vec::new(),
    }
}

fn label_set(ds: &Dataset) -> std::result::Result<&LabelSet, String> {
    ds.labels
        .as_ref()
        .ok_or_else(|| "the dataset has no label set".to_string())
}

/// Masked LM: every text tokenised without special tokens, all concatenated and cut into
/// blocks of `max_length - 2` tokens, each wrapped as `[CLS] block [SEP]`. The last block
/// shorter than that is dropped unless it is the only one (run_mlm's `group_texts`).
pub(crate) fn pack_texts(
    enc: &mut Encoder,
    records: Vec<(usize, Record)>,
    ds: &mut Dataset,
    skipped: &mut Vec<BadLine>,
) -> Result<()> {
    let block = enc.opts.max_length.saturating_sub(2);
    if block == 0 {
        return Err(Error::invalid("max_length leaves no room for a block"));
    }
    // (token id, special, text index)
    let mut stream: Vec<(u32, u32, usize)> = Vec::new();
    for (line, record) in records {
        let Record::Text(text) = record else {
            continue;
        };
        match enc.tok.encode_raw(&text) {
            Ok(raw) if raw.is_empty() => skipped.push(BadLine {
                line,
                message: "`text` has no tokens".into(),
            }),
            Ok(raw) => {
                let t = ds.examples.lines.len();
                ds.examples.lines.push(line);
                stream.extend(raw.ids.iter().zip(&raw.special).map(|(&id, &s)| (id, s, t)));
            }
            Err(e) => skipped.push(BadLine {
                line,
                message: format!("`text`: {e}"),
            }),
        }
    }
    let special = enc.tok.special_ids();
    let chunks: Vec<&[(u32, u32, usize)]> = if stream.len() < block {
        vec![&stream[..]]
    } else {
        stream.chunks_exact(block).collect()
    };
    for chunk in chunks {
        let Some(&(_, _, first)) = chunk.first() else {
            continue;
        };
        let mut seq = Sequence::default();
        seq.push(special.cls.0, 1);
        for &(id, s, _) in chunk {
            seq.push(id, s);
        }
        seq.push(special.sep.0, 1);
        ds.features.push(feature(vec![seq], Target::None, first));
    }
    Ok(())
}
