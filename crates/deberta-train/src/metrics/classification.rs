//! Classification metrics: accuracy and macro-averaged F1, as scikit-learn computes them
//! (`sklearn.metrics.accuracy_score`, `sklearn.metrics.f1_score(average="macro")`).

use std::collections::BTreeMap;

/// The fraction (0..=1) of positions where `predictions[i] == gold[i]`
/// (`sklearn.metrics.accuracy_score`).
///
/// Returns NaN when the inputs are empty (0/0: scikit-learn raises there) or their lengths
/// differ; [`super::classification_metrics`] turns both cases into errors.
pub fn accuracy(predictions: &[usize], gold: &[usize]) -> f64 {
    if predictions.len() != gold.len() || gold.is_empty() {
        return f64::NAN;
    }
    let correct = predictions.iter().zip(gold).filter(|(p, g)| p == g).count();
    correct as f64 / gold.len() as f64
}

/// Macro-averaged F1, as `sklearn.metrics.f1_score(gold, predictions, average="macro")` with
/// its default `zero_division="warn"` (which scores 0, without the warning).
///
/// The classes averaged over are the labels present in `gold ∪ predictions` (sorted, as
/// scikit-learn's `unique_labels`); a class that never occurs in either does not count. Each
/// class scores `F1 = 2·tp / (2·tp + fp + fn)`, i.e. `2·tp / (n_gold + n_predicted)` (the
/// formula scikit-learn uses since 1.3); a class with `tp = 0` scores 0, which is also what
/// `2PR/(P+R)` gives when precision or recall is a zero division set to 0. The result is the
/// unweighted mean over the classes.
///
/// Returns NaN when the inputs are empty (scikit-learn raises) or their lengths differ.
pub fn macro_f1(predictions: &[usize], gold: &[usize]) -> f64 {
    if predictions.len() != gold.len() || gold.is_empty() {
        return f64::NAN;
    }
    // label -> (true positives, times predicted, times in gold)
    let mut counts: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new();
    for (&p, &g) in predictions.iter().zip(gold) {
        counts.entry(p).or_default().1 += 1;
        counts.entry(g).or_default().2 += 1;
        if p == g {
            counts.entry(g).or_default().0 += 1;
        }
    }
    let total: f64 = counts
        .values()
        .map(|&(tp, predicted, actual)| f1_from_counts(tp, predicted, actual))
        .sum();
    total / counts.len() as f64
}

/// `2·tp / (n_gold + n_predicted)`, 0 when the denominator is 0 (zero division scored 0).
pub(crate) fn f1_from_counts(tp: usize, predicted: usize, actual: usize) -> f64 {
    let denominator = predicted + actual;
    if denominator == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denominator as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12
    }

    #[test]
    fn accuracy_hand_computed() {
        // 3 of 5 positions agree (0, 2, 4) -> 0.6.
        // sklearn.metrics.accuracy_score([0,1,2,2,1], [0,2,2,1,1]) == 0.6
        assert!(close(accuracy(&[0, 2, 2, 1, 1], &[0, 1, 2, 2, 1]), 0.6));
        assert_eq!(accuracy(&[3, 3], &[3, 3]), 1.0);
        assert_eq!(accuracy(&[1, 2], &[0, 0]), 0.0);
    }

    #[test]
    fn accuracy_empty_or_mismatched_is_nan() {
        assert!(accuracy(&[], &[]).is_nan());
        assert!(accuracy(&[1], &[1, 2]).is_nan());
    }

    #[test]
    fn macro_f1_hand_computed() {
        // gold = [0,0,1,1,2,2], pred = [0,1,1,1,2,0]
        // class 0: tp 1, predicted 2 (pos 0, 5), gold 2 -> 2/(2+2) = 0.5
        // class 1: tp 2, predicted 3 (pos 1,2,3), gold 2 -> 4/5 = 0.8
        // class 2: tp 1, predicted 1, gold 2 -> 2/3
        // mean = (0.5 + 0.8 + 0.666...)/3 = 1.9666.../3 = 0.655555...
        // sklearn f1_score(gold, pred, average="macro") == 0.6555555555555556
        let f1 = macro_f1(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2]);
        assert!(close(f1, 0.655_555_555_555_555_6), "{f1}");
    }

    #[test]
    fn macro_f1_counts_labels_only_in_predictions_or_only_in_gold() {
        // gold = [0,0,0,1], pred = [0,0,5,1]: labels {0,1,5}
        // class 0: tp 2, predicted 2, gold 3 -> 4/5 = 0.8
        // class 1: tp 1, predicted 1, gold 1 -> 1
        // class 5: tp 0 (never in gold: recall is a zero division, scored 0) -> 0
        // mean = 1.8/3 = 0.6; sklearn: 0.6
        assert!(close(macro_f1(&[0, 0, 5, 1], &[0, 0, 0, 1]), 0.6));
        // gold = [0,1,2], pred = [0,0,0]: class 1 and 2 are never predicted (precision is a
        // zero division, scored 0). class 0: 2·1/(3+1) = 0.5; mean = 0.5/3 = 0.1666...
        // sklearn: 0.16666666666666666
        assert!(close(macro_f1(&[0, 0, 0], &[0, 1, 2]), 1.0 / 6.0));
        // A label absent from both (say 7) does not dilute the mean: perfect 2-class -> 1.
        assert_eq!(macro_f1(&[0, 1], &[0, 1]), 1.0);
    }

    #[test]
    fn macro_f1_empty_or_mismatched_is_nan() {
        assert!(macro_f1(&[], &[]).is_nan());
        assert!(macro_f1(&[0, 1], &[0]).is_nan());
    }
}
