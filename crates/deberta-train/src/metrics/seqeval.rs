//! Entity-level scores for token classification, as `seqeval.metrics` (1.2.2) computes them in
//! its default mode (`mode=None`, `scheme=None`, `suffix=False`): conlleval-compatible chunking
//! by `seqeval.metrics.sequence_labeling.get_entities`, then micro-averaged precision, recall
//! and F1 over entities, plus per-type scores and seqeval's token accuracy. This is what
//! transformers' `run_ner` reports through `evaluate.load("seqeval")`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The scores of one entity type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TypeScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Entities of this type in the gold tags (seqeval's `support`, evaluate's `number`).
    pub support: usize,
}

/// seqeval's scores over a whole evaluation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityScores {
    /// Micro-averaged over entities: correct entities / predicted entities (0 when nothing was
    /// predicted, seqeval's `zero_division="warn"` value).
    pub precision: f64,
    /// Correct entities / gold entities (0 when there is no gold entity).
    pub recall: f64,
    /// `2PR / (P + R)`, 0 when `P + R = 0`.
    pub f1: f64,
    /// Token accuracy (`seqeval.metrics.accuracy_score`): equal tags / tags, NaN with no tag
    /// at all (seqeval divides by zero there).
    pub accuracy: f64,
    /// Per entity type, sorted by type name, over the types found in gold or predictions.
    pub per_type: BTreeMap<String, TypeScores>,
}

/// One chunk: `(type, first token, last token)` in seqeval's flattened numbering.
pub type Entity = (String, usize, usize);

/// seqeval's `get_entities(seq)` over one sequence of tags, positions counted from 0.
///
/// Each tag is read as seqeval reads it: its first character is the chunk tag (`B`, `I`, `E`,
/// `S`, `O`, or anything else) and the type is what follows the first `-` after that character
/// (the whole rest when there is no `-`), `_` when that is empty. So `B-PER` is (`B`, `PER`),
/// `O` is (`O`, `_`), a bare `B` is (`B`, `_`), and an unprefixed `PER` is (`P`, `ER`), exactly
/// as seqeval's code does (it only warns that such a tag "seems not to be NE tag"). Chunks then
/// open and close by seqeval's `start_of_chunk`/`end_of_chunk`: `I-`/`E-` after `O`, after an
/// `E-`/`S-`, or with a type change start a new chunk; `B-`/`S-` always start one; a chunk ends
/// after `E-`/`S-`, before `B-`/`S-`/`O`, or on a type change.
///
/// An empty tag is an error (seqeval fails on it with an `IndexError`).
pub fn get_entities(tags: &[&str]) -> Result<Vec<Entity>> {
    let mut chunks = Vec::new();
    let mut prev_tag = 'O';
    // seqeval starts with prev_tag = 'O', prev_type = ''.
    let mut prev_type = String::new();
    let mut begin = 0;
    for (i, chunk) in tags.iter().copied().chain(std::iter::once("O")).enumerate() {
        let (tag, type_) = split_tag(chunk)
            .ok_or_else(|| Error::invalid(format!("seqeval: empty tag at position {i}")))?;
        if end_of_chunk(prev_tag, tag, &prev_type, type_) {
            chunks.push((prev_type.clone(), begin, i.saturating_sub(1)));
        }
        if start_of_chunk(prev_tag, tag, &prev_type, type_) {
            begin = i;
        }
        prev_tag = tag;
        prev_type.clear();
        prev_type.push_str(type_);
    }
    Ok(chunks)
}

/// `(chunk[0], chunk[1:].split('-', maxsplit=1)[-1] or '_')`; `None` for an empty tag.
fn split_tag(chunk: &str) -> Option<(char, &str)> {
    let mut chars = chunk.chars();
    let tag = chars.next()?;
    let rest = chars.as_str();
    let type_ = match rest.split_once('-') {
        Some((_, after)) => after,
        None => rest,
    };
    Some((tag, if type_.is_empty() { "_" } else { type_ }))
}

/// seqeval's `end_of_chunk`: did a chunk end between the previous token and this one?
fn end_of_chunk(prev_tag: char, tag: char, prev_type: &str, type_: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != type_)
}

/// seqeval's `start_of_chunk`: did a chunk start between the previous token and this one?
fn start_of_chunk(prev_tag: char, tag: char, prev_type: &str, type_: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != type_)
}

/// seqeval's default scores of `predicted` against `gold`, one tag sequence per sentence.
///
/// As seqeval does, the sentences are joined into one sequence with an `O` after each
/// sentence, and entities are chunks of that sequence (so a chunk never spans two sentences
/// except through seqeval's own quirks with tags that are not `B`/`I`/`E`/`S`/`O`). An entity
/// is correct when the same type, start and end are found in both.
///
/// Sentence counts or lengths that differ are an error naming the first sentence at fault
/// (seqeval raises `ValueError`); so is an empty tag. No entity at all gives precision, recall
/// and F1 of 0 (seqeval's values, with its warning).
pub fn seqeval(gold: &[Vec<String>], predicted: &[Vec<String>]) -> Result<EntityScores> {
    if gold.len() != predicted.len() {
        return Err(Error::invalid(format!(
            "seqeval: {} gold sentences but {} predicted",
            gold.len(),
            predicted.len()
        )));
    }
    for (i, (g, p)) in gold.iter().zip(predicted).enumerate() {
        if g.len() != p.len() {
            return Err(Error::invalid(format!(
                "seqeval: sentence {i} has {} gold tags but {} predicted",
                g.len(),
                p.len()
            )));
        }
    }
    let true_entities = entities_by_type(gold)?;
    let pred_entities = entities_by_type(predicted)?;

    let types: BTreeSet<&String> = true_entities.keys().chain(pred_entities.keys()).collect();
    let empty = BTreeSet::new();
    let (mut tp_all, mut pred_all, mut true_all) = (0, 0, 0);
    let mut per_type = BTreeMap::new();
    for name in types {
        let t = true_entities.get(name).unwrap_or(&empty);
        let p = pred_entities.get(name).unwrap_or(&empty);
        let tp = t.intersection(p).count();
        tp_all += tp;
        pred_all += p.len();
        true_all += t.len();
        let (precision, recall, f1) = prf(tp, p.len(), t.len());
        per_type.insert(
            name.clone(),
            TypeScores {
                precision,
                recall,
                f1,
                support: t.len(),
            },
        );
    }
    let (precision, recall, f1) = prf(tp_all, pred_all, true_all);
    Ok(EntityScores {
        precision,
        recall,
        f1,
        accuracy: token_accuracy(gold, predicted),
        per_type,
    })
}

/// Entities of all sentences, joined as seqeval joins them (`sentence + ['O']` each).
fn entities_by_type(
    sentences: &[Vec<String>],
) -> Result<BTreeMap<String, BTreeSet<(usize, usize)>>> {
    let mut flat: Vec<&str> = Vec::with_capacity(sentences.iter().map(|s| s.len() + 1).sum());
    for sentence in sentences {
        flat.extend(sentence.iter().map(String::as_str));
        flat.push("O");
    }
    let mut by_type: BTreeMap<String, BTreeSet<(usize, usize)>> = BTreeMap::new();
    for (type_, start, end) in get_entities(&flat).map_err(|e| locate(e, sentences))? {
        by_type.entry(type_).or_default().insert((start, end));
    }
    Ok(by_type)
}

/// Names the sentence and token of an empty tag instead of its flattened position.
fn locate(error: Error, sentences: &[Vec<String>]) -> Error {
    for (i, sentence) in sentences.iter().enumerate() {
        if let Some(j) = sentence.iter().position(String::is_empty) {
            return Error::invalid(format!("seqeval: sentence {i}, token {j}: empty tag"));
        }
    }
    error
}

/// Precision, recall and F1 as seqeval computes them: each ratio 0 on a zero division, and
/// `F1 = 2PR/(P+R)` with 0 when `P + R = 0`.
fn prf(tp: usize, predicted: usize, actual: usize) -> (f64, f64, f64) {
    let ratio = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let precision = ratio(tp, predicted);
    let recall = ratio(tp, actual);
    let denominator = precision + recall;
    let f1 = if denominator == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / denominator
    };
    (precision, recall, f1)
}

/// `seqeval.metrics.accuracy_score`: equal tags over all tags; NaN with no tag.
fn token_accuracy(gold: &[Vec<String>], predicted: &[Vec<String>]) -> f64 {
    let (mut correct, mut total) = (0usize, 0usize);
    for (g, p) in gold.iter().zip(predicted) {
        total += g.len();
        correct += g.iter().zip(p).filter(|(a, b)| a == b).count();
    }
    if total == 0 {
        f64::NAN
    } else {
        correct as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|t| t.to_string()).collect())
            .collect()
    }

    fn entities(tags: &[&str]) -> Vec<(String, usize, usize)> {
        get_entities(tags).unwrap()
    }

    fn e(t: &str, s: usize, end: usize) -> Entity {
        (t.to_string(), s, end)
    }

    #[test]
    fn get_entities_docstring_example() {
        // seqeval's own docstring: [('PER', 0, 1), ('LOC', 3, 3)]
        assert_eq!(
            entities(&["B-PER", "I-PER", "O", "B-LOC"]),
            vec![e("PER", 0, 1), e("LOC", 3, 3)]
        );
    }

    #[test]
    fn get_entities_tricky_cases() {
        // I- after O starts a chunk (IOB1 style); I- of another type ends it and starts a new
        // one; B- right after I- of the same type starts a new chunk; a chunk running to the
        // end of the sequence is closed by the appended 'O'.
        //   0 I-PER  start PER
        //   1 I-LOC  type change: end PER(0,0), start LOC
        //   2 B-LOC  B after I: end LOC(1,1), start LOC
        //   3 I-LOC
        //   4 O      end LOC(2,3)
        //   5 I-MISC start MISC, runs to the end -> MISC(5,6)
        //   6 I-MISC
        // checked with seqeval 1.2.2:
        // [('PER',0,0), ('LOC',1,1), ('LOC',2,3), ('MISC',5,6)]
        assert_eq!(
            entities(&["I-PER", "I-LOC", "B-LOC", "I-LOC", "O", "I-MISC", "I-MISC"]),
            vec![
                e("PER", 0, 0),
                e("LOC", 1, 1),
                e("LOC", 2, 3),
                e("MISC", 5, 6)
            ]
        );
        // IOBES: S- is a chunk by itself; E- closes; E- after E- starts a new chunk; B-I-E.
        //   0 S-PER -> PER(0,0)
        //   1 B-ORG 2 I-ORG 3 E-ORG -> ORG(1,3)
        //   4 E-ORG  E after E: new chunk ORG(4,4)
        //   5 S-LOC -> LOC(5,5)
        // seqeval: [('PER',0,0), ('ORG',1,3), ('ORG',4,4), ('LOC',5,5)]
        assert_eq!(
            entities(&["S-PER", "B-ORG", "I-ORG", "E-ORG", "E-ORG", "S-LOC"]),
            vec![
                e("PER", 0, 0),
                e("ORG", 1, 3),
                e("ORG", 4, 4),
                e("LOC", 5, 5)
            ]
        );
        // A bare 'B' has type '_'; an unprefixed 'PER' is read as tag 'P', type 'ER' (seqeval
        // warns "seems not to be NE tag" and goes on); 'B-' also has type '_'.
        //   0 B      start '_'
        //   1 PER    type change ('_' -> 'ER'): end _(0,0), start ER
        //   2 PER    same type, tag 'P' neither starts nor ends
        //   3 O      type change: end ER(1,2)
        //   4 B-     start '_' -> _(4,4) at the end
        // seqeval: [('_',0,0), ('ER',1,2), ('_',4,4)]
        assert_eq!(
            entities(&["B", "PER", "PER", "O", "B-"]),
            vec![e("_", 0, 0), e("ER", 1, 2), e("_", 4, 4)]
        );
        // The type is what follows the first '-' after the first character.
        // seqeval: [('PER-X', 0, 1)]  ('B-PER-X' and 'IX-PER-X' -> 'PER-X')
        assert_eq!(entities(&["B-PER-X", "IX-PER-X"]), vec![e("PER-X", 0, 1)]);
        // '.' is a tag that neither ends a chunk nor starts one on a type change.
        // seqeval: [('PER', 0, 1)] and [('PER', 0, 2)]
        assert_eq!(entities(&[".PER", "I-PER"]), vec![e("PER", 0, 1)]);
        assert_eq!(entities(&["B-PER", ".PER", "I-PER"]), vec![e("PER", 0, 2)]);
        assert!(get_entities(&["B-PER", ""]).is_err());
        assert_eq!(entities(&[]), vec![]);
    }

    #[test]
    fn sentences_are_joined_as_seqeval_joins_them() {
        // [["I-PER"], ["I-PER"]] -> I-PER O I-PER O: two chunks, seqeval
        // [('PER', 0, 0), ('PER', 2, 2)]
        let flat = entities_by_type(&sentences(&[&["I-PER"], &["I-PER"]])).unwrap();
        assert_eq!(flat["PER"], BTreeSet::from([(0, 0), (2, 2)]));
        // seqeval's quirk with unknown tags: 'X' (tag 'X', type '_') opens a chunk that the
        // sentence's 'O' (type '_' too) does not close, so it runs into the next sentence
        // until B-PER changes the type: [["B-PER","X"],["Y","B-PER"]] ->
        // B-PER X O Y B-PER O; seqeval: [('PER',0,0), ('_',1,3), ('PER',4,4)]
        let flat = entities_by_type(&sentences(&[&["B-PER", "X"], &["Y", "B-PER"]])).unwrap();
        assert_eq!(flat["PER"], BTreeSet::from([(0, 0), (4, 4)]));
        assert_eq!(flat["_"], BTreeSet::from([(1, 3)]));
    }

    #[test]
    fn seqeval_several_types() {
        // sentence 0: gold PER(0,1) LOC(3,3); pred PER(0,1) LOC(3,4) (too long)
        // sentence 1 (offset 6 = 5 tokens + 'O'): gold ORG(6,6) MISC(8,9) via I- after O;
        //             pred ORG(6,6) MISC(8,9) (B-MISC I-MISC: same span, counts as correct)
        // sentence 2 (offset 11): gold PER(11,11) at the end; pred LOC(11,11) (wrong type)
        // gold entities: PER 2, LOC 1, ORG 1, MISC 1 = 5; predicted: PER 1, LOC 2, ORG 1,
        // MISC 1 = 5; correct: PER(0,1), ORG(6,6), MISC(8,9) = 3
        // precision = 3/5 = 0.6, recall = 3/5 = 0.6, f1 = 0.6
        // per type: LOC p 0/2 r 0/1 f 0; MISC 1/1/1; ORG 1/1/1; PER p 1/1, r 1/2, f 2/3
        // token accuracy: sentence 0: 4 of 5 (pos 4 differs); sentence 1: 3 of 4 (pos 2
        // I-MISC vs B-MISC); sentence 2: 0 of 1 -> 7/10 = 0.7
        // seqeval 1.2.2: precision 0.6, recall 0.6, f1 0.6, accuracy 0.7; classification_report
        // agrees per type
        let gold = sentences(&[
            &["B-PER", "I-PER", "O", "B-LOC", "O"],
            &["B-ORG", "O", "I-MISC", "I-MISC"],
            &["B-PER"],
        ]);
        let pred = sentences(&[
            &["B-PER", "I-PER", "O", "B-LOC", "I-LOC"],
            &["B-ORG", "O", "B-MISC", "I-MISC"],
            &["B-LOC"],
        ]);
        let s = seqeval(&gold, &pred).unwrap();
        assert!((s.precision - 0.6).abs() < 1e-12);
        assert!((s.recall - 0.6).abs() < 1e-12);
        assert!((s.f1 - 0.6).abs() < 1e-12);
        assert!((s.accuracy - 0.7).abs() < 1e-12);
        let names: Vec<&str> = s.per_type.keys().map(String::as_str).collect();
        assert_eq!(names, ["LOC", "MISC", "ORG", "PER"]);
        let loc = s.per_type["LOC"];
        assert_eq!(
            (loc.precision, loc.recall, loc.f1, loc.support),
            (0.0, 0.0, 0.0, 1)
        );
        let per = s.per_type["PER"];
        assert_eq!((per.precision, per.recall, per.support), (1.0, 0.5, 2));
        assert!((per.f1 - 2.0 / 3.0).abs() < 1e-12);
        let misc = s.per_type["MISC"];
        assert_eq!(
            (misc.precision, misc.recall, misc.f1, misc.support),
            (1.0, 1.0, 1.0, 1)
        );
    }

    #[test]
    fn seqeval_iobes_and_type_switch() {
        // gold: S-PER B-ORG E-ORG O | B-LOC I-LOC E-LOC
        //   PER(0,0) ORG(1,2) | LOC(5,7)
        // pred: S-PER B-ORG I-LOC O | B-LOC I-LOC E-LOC
        //   PER(0,0), ORG(1,1) (type switch ends it), LOC(2,2) | LOC(5,7)
        // correct: PER(0,0), LOC(5,7) = 2; predicted 4; gold 3
        // precision 0.5, recall 2/3, f1 = 2·0.5·(2/3)/(0.5+2/3) = (2/3)/(7/6) = 4/7
        // seqeval 1.2.2: 0.5, 0.6666666666666666, 0.5714285714285715
        let gold = sentences(&[
            &["S-PER", "B-ORG", "E-ORG", "O"],
            &["B-LOC", "I-LOC", "E-LOC"],
        ]);
        let pred = sentences(&[
            &["S-PER", "B-ORG", "I-LOC", "O"],
            &["B-LOC", "I-LOC", "E-LOC"],
        ]);
        let s = seqeval(&gold, &pred).unwrap();
        assert!((s.precision - 0.5).abs() < 1e-12);
        assert!((s.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.f1 - 4.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn seqeval_all_o_scores_zero() {
        // No entity anywhere: seqeval warns and returns 0 for precision, recall and f1;
        // every tag matches, so token accuracy is 1.
        let gold = sentences(&[&["O", "O"], &["O"]]);
        let s = seqeval(&gold, &gold).unwrap();
        assert_eq!(
            (s.precision, s.recall, s.f1, s.accuracy),
            (0.0, 0.0, 0.0, 1.0)
        );
        assert!(s.per_type.is_empty());
        // Gold entities but nothing predicted: precision 0 (zero division), recall 0.
        let pred = sentences(&[&["O", "O"]]);
        let s = seqeval(&sentences(&[&["B-PER", "O"]]), &pred).unwrap();
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
        assert_eq!(s.per_type["PER"].support, 1);
        assert!((s.accuracy - 0.5).abs() < 1e-12);
    }

    #[test]
    fn seqeval_empty_input() {
        let s = seqeval(&[], &[]).unwrap();
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
        assert!(s.accuracy.is_nan());
        let s = seqeval(&[vec![]], &[vec![]]).unwrap();
        assert!(s.accuracy.is_nan());
    }

    #[test]
    fn seqeval_errors_name_the_sentence() {
        let gold = sentences(&[&["O"], &["B-PER", "O"]]);
        let pred = sentences(&[&["O"], &["B-PER"]]);
        let err = seqeval(&gold, &pred).unwrap_err().to_string();
        assert!(err.contains("sentence 1"), "{err}");
        let err = seqeval(&gold, &pred[..1]).unwrap_err().to_string();
        assert!(err.contains("2 gold sentences but 1"), "{err}");
        let pred = sentences(&[&["O"], &["B-PER", ""]]);
        let err = seqeval(&gold, &pred).unwrap_err().to_string();
        assert!(err.contains("sentence 1, token 1"), "{err}");
    }
}
