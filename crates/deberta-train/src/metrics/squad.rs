//! Extractive QA scores, as the official SQuAD v1.1 evaluation script (`evaluate-v1.1.py`,
//! also `evaluate.load("squad")`, which `run_qa` uses) computes them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// SQuAD's scores, on the 0..=100 scale the script reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SquadScores {
    pub exact_match: f64,
    pub f1: f64,
}

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The script's `normalize_answer`: lowercase, drop every character of `string.punctuation`,
/// replace the whole words `a`, `an` and `the` by a space (`re.sub(r'\b(a|an|the)\b', ' ', …)`),
/// then split on whitespace and join with single spaces.
///
/// Word characters for `\b` are `_` and alphanumerics (`char::is_alphanumeric`, close to
/// Python's `str.isalnum`; they differ only on some combining marks of non-Latin scripts).
/// Whitespace is Python's `str.split()` whitespace: Unicode `White_Space` plus the separators
/// U+001C..=U+001F.
pub fn normalize_answer(text: &str) -> String {
    let lowered = text.to_lowercase();
    let no_punct: String = lowered
        .chars()
        .filter(|c| !PUNCTUATION.contains(*c))
        .collect();
    let no_articles = remove_articles(&no_punct);
    tokens(&no_articles).collect::<Vec<_>>().join(" ")
}

/// Whitespace split as Python's `str.split()`.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_space).filter(|t| !t.is_empty())
}

fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Every maximal run of word characters that is exactly `a`, `an` or `the` becomes one space:
/// `\b(a|an|the)\b` can only match a whole run.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(first) = rest.chars().next() {
        let run_len = if is_word(first) {
            rest.find(|c: char| !is_word(c)).unwrap_or(rest.len())
        } else {
            rest.find(is_word).unwrap_or(rest.len())
        };
        let (run, tail) = rest.split_at(run_len);
        if matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        rest = tail;
    }
    out
}

/// The script's `exact_match_score`: the normalised strings are equal.
pub fn exact_match(prediction: &str, ground_truth: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(ground_truth)
}

/// The script's `f1_score` (0..=1): bag-of-tokens F1 of the normalised strings, 0 when no
/// token is shared (so also 0 when both normalise to nothing: SQuAD v1.1, not v2's 1).
pub fn token_f1(prediction: &str, ground_truth: &str) -> f64 {
    let prediction = normalize_answer(prediction);
    let ground_truth = normalize_answer(ground_truth);
    let pred_tokens: Vec<&str> = tokens(&prediction).collect();
    let gold_tokens: Vec<&str> = tokens(&ground_truth).collect();
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold_tokens {
        *gold_counts.entry(t).or_default() += 1;
    }
    let mut num_same = 0usize;
    for t in &pred_tokens {
        if let Some(n) = gold_counts.get_mut(t).filter(|n| **n > 0) {
            *n -= 1;
            num_same += 1;
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = num_same as f64 / pred_tokens.len() as f64;
    let recall = num_same as f64 / gold_tokens.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// SQuAD v1.1's exact match and F1 (0..=100): for each example the best score over its gold
/// answers, then the mean over examples, times 100.
///
/// Errors: `predictions` and `answers` of different lengths, or an example with no gold
/// answer (the script's `max()` of nothing raises), named by its index. No example at all
/// gives NaN scores (the script divides by zero).
pub fn squad(predictions: &[String], answers: &[Vec<String>]) -> Result<SquadScores> {
    if predictions.len() != answers.len() {
        return Err(Error::invalid(format!(
            "squad: {} predictions but {} answer lists",
            predictions.len(),
            answers.len()
        )));
    }
    let (mut em_total, mut f1_total) = (0.0, 0.0);
    for (i, (prediction, golds)) in predictions.iter().zip(answers).enumerate() {
        if golds.is_empty() {
            return Err(Error::invalid(format!(
                "squad: example {i} has no gold answer"
            )));
        }
        let em = golds.iter().any(|g| exact_match(prediction, g));
        let f1 = golds
            .iter()
            .map(|g| token_f1(prediction, g))
            .fold(0.0, f64::max);
        em_total += if em { 1.0 } else { 0.0 };
        f1_total += f1;
    }
    let total = predictions.len() as f64;
    Ok(SquadScores {
        exact_match: 100.0 * em_total / total,
        f1: 100.0 * f1_total / total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalize_answer_like_the_script() {
        // Every normalisation below is what the v1.1 script's normalize_answer returns.
        // lower -> "the  eiffel tower, (paris)!" ; no punct -> "the  eiffel tower paris" ;
        // articles -> "   eiffel tower paris"; whitespace -> "eiffel tower paris"
        assert_eq!(
            normalize_answer("The  Eiffel Tower, (Paris)!"),
            "eiffel tower paris"
        );
        // Articles only as whole words: "theater", "an't"->"ant" (apostrophe removed first),
        // "a-b" -> "ab" (the hyphen goes first, so no article remains).
        assert_eq!(normalize_answer("Theater an't a-b A"), "theater ant ab");
        // "a.m." -> "am"; "the_cat" -> "thecat" ('_' is punctuation, removed before \b)
        assert_eq!(normalize_answer("a.m. the_cat"), "am thecat");
        // Consecutive articles all go; tabs/newlines/NBSP and U+001F collapse.
        assert_eq!(normalize_answer("a an the\tAN\nx\u{a0}y\u{1f}z"), "x y z");
        assert_eq!(normalize_answer("  "), "");
        // Non-ASCII letters are word characters: "thé" is not an article.
        assert_eq!(normalize_answer("Thé Ärger"), "thé ärger");
    }

    #[test]
    fn token_f1_hand_computed() {
        // pred "the cat sat on the mat" -> [cat, sat, on, mat]
        // gold "a cat on a mat"        -> [cat, on, mat]
        // common 3; P = 3/4, R = 3/3; F1 = 2·0.75·1/1.75 = 6/7
        assert!((token_f1("the cat sat on the mat", "a cat on a mat") - 6.0 / 7.0).abs() < 1e-12);
        // Repeated tokens count with multiplicity: pred [x,x,y], gold [x,y,y]: common x1,y1 = 2
        // P = 2/3, R = 2/3, F1 = 2/3
        assert!((token_f1("x x y", "x y y") - 2.0 / 3.0).abs() < 1e-12);
        // Both empty after normalisation: 0 in SQuAD v1.1.
        assert_eq!(token_f1("the", "a"), 0.0);
        assert_eq!(token_f1("dog", "cat"), 0.0);
    }

    #[test]
    fn squad_hand_computed_with_multiple_answers() {
        // ex 0: pred "The Eiffel Tower!" vs ["eiffel tower", "the tower"]
        //       normalised "eiffel tower" == gold 0 -> EM 1, F1 1
        // ex 1: pred "in Paris, France" vs ["Paris", "France's capital, Paris"]
        //       pred tokens [in, paris, france]
        //       gold 0 [paris]: common 1, P 1/3, R 1 -> F1 = (2/3)/(4/3) = 0.5
        //       gold 1 [frances, capital, paris]: common 1 (paris), P 1/3, R 1/3 -> 1/3
        //       EM 0, F1 max = 0.5
        // ex 2: pred "an apple" vs ["Apple", "apples"] -> "apple" == "apple": EM 1, F1 1
        // ex 3: pred "1889" vs ["in 1887"]: no common token: EM 0, F1 0
        // EM = 100·2/4 = 50; F1 = 100·(1 + 0.5 + 1 + 0)/4 = 62.5
        // the v1.1 script's functions (run verbatim) give EM 50.0, F1 62.5
        let preds = strings(&["The Eiffel Tower!", "in Paris, France", "an apple", "1889"]);
        let answers = vec![
            strings(&["eiffel tower", "the tower"]),
            strings(&["Paris", "France's capital, Paris"]),
            strings(&["Apple", "apples"]),
            strings(&["in 1887"]),
        ];
        let s = squad(&preds, &answers).unwrap();
        assert!((s.exact_match - 50.0).abs() < 1e-9, "{s:?}");
        assert!((s.f1 - 62.5).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn squad_edge_cases() {
        let s = squad(&[], &[]).unwrap();
        assert!(s.exact_match.is_nan() && s.f1.is_nan());
        let err = squad(&strings(&["x"]), &[]).unwrap_err().to_string();
        assert!(err.contains("1 predictions but 0"), "{err}");
        let err = squad(&strings(&["x", "y"]), &[strings(&["x"]), vec![]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("example 1"), "{err}");
    }
}
