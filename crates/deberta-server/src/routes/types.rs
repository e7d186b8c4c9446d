//! Request shapes shared by the routes, and the timing headers of a response.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use deberta_tokenizer::Side;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::infer::Timings;

/// One input, or a batch of them (answered with one output, or a list of outputs).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged, expecting = "one input or a list of inputs")]
pub enum OneOrMany<T> {
    /// A single input.
    One(T),
    /// A batch.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The inputs, and whether a single one was sent.
    pub fn into_vec(self) -> (Vec<T>, bool) {
        match self {
            OneOrMany::One(x) => (vec![x], true),
            OneOrMany::Many(v) => (v, false),
        }
    }

    /// The outputs in the request's shape.
    pub fn shaped(mut outputs: Vec<T>, single: bool) -> Self {
        match (single, outputs.pop()) {
            (true, Some(one)) if outputs.is_empty() => OneOrMany::One(one),
            (_, last) => {
                outputs.extend(last);
                OneOrMany::Many(outputs)
            }
        }
    }
}

/// Which end truncation cuts (TEI's `truncation_direction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TruncationDirection {
    /// Keep the start.
    #[default]
    Right,
    /// Keep the end.
    Left,
}

impl From<TruncationDirection> for Side {
    fn from(d: TruncationDirection) -> Side {
        match d {
            TruncationDirection::Right => Side::Right,
            TruncationDirection::Left => Side::Left,
        }
    }
}

/// Fails with 400 `Empty` when there is no input or a text is blank.
pub(crate) fn check_texts<'a>(
    field: &str,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let mut any = false;
    for (i, t) in texts.into_iter().enumerate() {
        any = true;
        if t.trim().is_empty() {
            return Err(ApiError::empty(format!("`{field}[{i}]` cannot be empty")));
        }
    }
    if !any {
        return Err(ApiError::empty(format!("`{field}` cannot be empty")));
    }
    Ok(())
}

/// TEI's timing headers (milliseconds), plus the computed tokens and characters.
pub(crate) fn timing_headers(t: &Timings, chars: usize) -> HeaderMap {
    let total = t.start.elapsed().as_millis();
    let pairs: [(&str, String); 8] = [
        ("x-compute-type", "cpu".to_string()),
        ("x-compute-time", total.to_string()),
        ("x-compute-characters", chars.to_string()),
        ("x-compute-tokens", t.tokens.to_string()),
        ("x-total-time", total.to_string()),
        (
            "x-tokenization-time",
            t.tokenization.as_millis().to_string(),
        ),
        ("x-queue-time", t.queue.as_millis().to_string()),
        ("x-inference-time", t.inference.as_millis().to_string()),
    ];
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    crate::metrics::timings(t);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many_keeps_the_shape() {
        let one: OneOrMany<String> = serde_json::from_str(r#""a""#).unwrap();
        let (v, single) = one.into_vec();
        assert!(single);
        assert!(matches!(OneOrMany::shaped(v, single), OneOrMany::One(_)));
        let many: OneOrMany<String> = serde_json::from_str(r#"["a"]"#).unwrap();
        let (v, single) = many.into_vec();
        assert!(!single);
        assert!(matches!(OneOrMany::shaped(v, single), OneOrMany::Many(m) if m.len() == 1));
        assert!(check_texts("inputs", ["a", " "]).is_err());
        assert!(check_texts("inputs", Vec::<&str>::new()).is_err());
    }
}
