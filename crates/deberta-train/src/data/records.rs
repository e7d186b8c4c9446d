//! The fields of each format, checked line by line before tokenisation.

use std::path::Path;

use serde_json::{Map, Value};

use super::labels::RawLabel;
use super::read::{
    as_index, field, json_type, list_field, non_blank, optional_text, read_objects, text_field,
};
use super::{BadLine, QaAnswer, QaExample, Task};
use crate::Result;

/// One parsed line.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    Sequence {
        text: String,
        pair: Option<String>,
        label: RawLabel,
    },
    Tokens {
        tokens: Vec<String>,
        tags: Vec<RawLabel>,
    },
    Qa(QaExample),
    Choice {
        prompt: String,
        choices: Vec<String>,
        label: usize,
    },
    Text(String),
}

/// A record and its 1-based line.
pub(crate) type Numbered = (usize, Record);

/// The good lines of `path` as records of `task` (with their 1-based numbers), and the bad ones.
///
/// Multiple choice: every line must have as many choices as the first good line; a line with
/// another count is a bad line (so that every batch is a `[B, C, L]` block).
pub(crate) fn read_records(path: &Path, task: Task) -> Result<(Vec<Numbered>, Vec<BadLine>)> {
    let (objects, mut bad) = read_objects(path)?;
    let mut good = Vec::with_capacity(objects.len());
    let mut choices: Option<usize> = None;
    for o in objects {
        let parsed = parse(&o.object, task).and_then(|r| match (&r, choices) {
            (Record::Choice { choices: c, .. }, Some(n)) if c.len() != n => Err(format!(
                "`choices` has {} entries, but the first example has {n} (every example needs \
                 the same number of choices)",
                c.len()
            )),
            (Record::Choice { choices: c, .. }, None) => {
                choices = Some(c.len());
                Ok(r)
            }
            _ => Ok(r),
        });
        match parsed {
            Ok(r) => good.push((o.line, r)),
            Err(message) => bad.push(super::BadLine {
                line: o.line,
                message,
            }),
        }
    }
    bad.sort_by_key(|b| b.line);
    Ok((good, bad))
}

fn parse(o: &Map<String, Value>, task: Task) -> std::result::Result<Record, String> {
    match task {
        Task::SequenceClassification => Ok(Record::Sequence {
            text: text_field(o, "text")?,
            pair: optional_text(o, "text_pair")?,
            label: RawLabel::parse(field(o, "label")?, "label", true)?,
        }),
        Task::TokenClassification => tokens(o),
        Task::QuestionAnswering => qa(o).map(Record::Qa),
        Task::MultipleChoice => choice(o),
        Task::MaskedLm => Ok(Record::Text(text_field(o, "text")?)),
    }
}

fn tokens(o: &Map<String, Value>) -> std::result::Result<Record, String> {
    let words = list_field(o, "tokens")?;
    let tags = list_field(o, "tags")?;
    if words.is_empty() {
        return Err("`tokens` is empty".into());
    }
    if words.len() != tags.len() {
        return Err(format!(
            "`tokens` has {} entries but `tags` has {}",
            words.len(),
            tags.len()
        ));
    }
    let tokens = words
        .iter()
        .enumerate()
        .map(|(i, w)| non_blank(w, &format!("tokens[{i}]")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let tags = tags
        .iter()
        .enumerate()
        .map(|(i, t)| RawLabel::parse(t, &format!("tags[{i}]"), false))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Record::Tokens { tokens, tags })
}

fn qa(o: &Map<String, Value>) -> std::result::Result<QaExample, String> {
    let id = match o.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(format!(
                "`id` must be a string or a number, got {}",
                json_type(other)
            ))
        }
    };
    let question = text_field(o, "question")?;
    let context = text_field(o, "context")?;
    let answers = match field(o, "answers")? {
        Value::Object(a) => a,
        other => {
            return Err(format!(
                "`answers` must be an object {{\"text\": [...], \"answer_start\": [...]}}, got {}",
                json_type(other)
            ))
        }
    };
    let texts = list_field(answers, "text").map_err(|e| format!("answers: {e}"))?;
    let starts = list_field(answers, "answer_start").map_err(|e| format!("answers: {e}"))?;
    if texts.len() != starts.len() {
        return Err(format!(
            "`answers.text` has {} entries but `answers.answer_start` has {}",
            texts.len(),
            starts.len()
        ));
    }
    let context_chars = context.chars().count();
    let mut out = Vec::with_capacity(texts.len());
    for (i, (t, s)) in texts.iter().zip(starts).enumerate() {
        let text = non_blank(t, &format!("answers.text[{i}]"))?;
        let start = as_index(s).ok_or_else(|| {
            format!("`answers.answer_start[{i}]` must be a non-negative integer, got {s}")
        })?;
        let end = start + text.chars().count();
        if end > context_chars {
            return Err(format!(
                "`answers.answer_start[{i}]`: the answer ends at character {end}, after the \
                 context's {context_chars}"
            ));
        }
        out.push(QaAnswer { text, start });
    }
    Ok(QaExample {
        id,
        question,
        context,
        answers: out,
    })
}

fn choice(o: &Map<String, Value>) -> std::result::Result<Record, String> {
    let prompt = text_field(o, "prompt")?;
    let list = list_field(o, "choices")?;
    if list.is_empty() {
        return Err("`choices` is empty".into());
    }
    let choices = list
        .iter()
        .enumerate()
        .map(|(i, c)| non_blank(c, &format!("choices[{i}]")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let raw = field(o, "label")?;
    let label = as_index(raw)
        .filter(|&l| l < choices.len())
        .ok_or_else(|| {
            format!(
                "`label` must be the index of a choice in 0..{}, got {raw}",
                choices.len()
            )
        })?;
    Ok(Record::Choice {
        prompt,
        choices,
        label,
    })
}
