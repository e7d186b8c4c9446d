//! Small numeric and text helpers shared by the tasks (numpy / Python semantics).

use deberta_tokenizer::Tokenizer;

use crate::error::{Error, Result};

/// `softmax(x)` computed as numpy does (`exp(x - max) / sum`), in f64.
pub fn softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// `1 / (1 + exp(-x))`.
pub fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// Index of the first maximum (numpy `argmax`); 0 for an empty slice.
pub fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if x.get(best).is_some_and(|b| v > b) {
            best = i;
        }
    }
    best
}

/// `text[start:end]` with Python's character indices (clamped, never panics).
pub fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect()
}

/// Fails with a clear error when `text` is empty or whitespace only.
pub fn non_empty(field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::input(field, "is empty"));
    }
    Ok(())
}

/// The id of a vocabulary entry or added token (`get_vocab()[token]`), if there is one.
pub fn token_to_id(tokenizer: &Tokenizer, token: &str) -> Option<u32> {
    tokenizer.token_to_id(token)
}

/// transformers' `convert_tokens_to_string` (the tokenizer's decoder over token strings).
pub fn tokens_to_string(tokenizer: &Tokenizer, tokens: &[String]) -> Result<String> {
    Ok(tokenizer.convert_tokens_to_string(tokens)?)
}

/// The id of a special token named in `tokenizer_config.json` (`[MASK]`, `[UNK]`).
pub fn special_id(tokenizer: &Tokenizer, name: &str, what: &str) -> Result<u32> {
    token_to_id(tokenizer, name)
        .ok_or_else(|| Error::Model(format!("the tokenizer has no {what} token `{name}`")))
}

/// The tokenizer's `model_max_length`, `None` when it is the "no limit" sentinel.
pub fn model_max_length(tokenizer: &Tokenizer) -> Option<usize> {
    let n = tokenizer.config().model_max_length;
    (n > 0 && n < 1 << 40).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(char_slice("Zoë wins", 2, 5), "ë w");
        assert_eq!(char_slice("ab", 1, 9), "b");
        assert_eq!(argmax(&[0.1, 0.5, 0.5]), 1);
        let s = softmax(&[1.0, 2.0]);
        assert!((s[0] + s[1] - 1.0).abs() < 1e-12);
    }
}
