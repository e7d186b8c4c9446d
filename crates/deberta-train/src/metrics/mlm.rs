//! Masked-language-modelling metrics, as transformers' `run_mlm` reports them.

/// The label of a position the loss ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// `exp(mean_loss)`, as `run_mlm` turns `eval_loss` into `perplexity`; `+inf` when that
/// overflows (`run_mlm` catches `OverflowError` and reports `inf`), NaN for a NaN loss.
pub fn perplexity(mean_loss: f64) -> f64 {
    mean_loss.exp()
}

/// The fraction of positions whose label is not `-100` where `predictions[i] == labels[i]`
/// (`run_mlm`'s `compute_metrics`: accuracy over `labels != -100`).
///
/// NaN when no position is labelled (the script's `accuracy_score` raises on an empty
/// selection) or the lengths differ.
pub fn masked_accuracy(predictions: &[u32], labels: &[i64]) -> f64 {
    if predictions.len() != labels.len() {
        return f64::NAN;
    }
    let (mut correct, mut total) = (0usize, 0usize);
    for (&p, &l) in predictions.iter().zip(labels) {
        if l != IGNORE_INDEX {
            total += 1;
            if i64::from(p) == l {
                correct += 1;
            }
        }
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

    #[test]
    fn perplexity_is_exp_of_the_loss() {
        assert_eq!(perplexity(0.0), 1.0);
        // ln 20 = 2.995732273553991 -> 20
        assert!((perplexity(20f64.ln()) - 20.0).abs() < 1e-12);
        // exp(1000) overflows: +inf as run_mlm reports.
        assert_eq!(perplexity(1000.0), f64::INFINITY);
        assert!(perplexity(f64::NAN).is_nan());
    }

    #[test]
    fn masked_accuracy_skips_ignored_positions() {
        // labels [-100, 5, 7, -100, 9], preds [1, 5, 8, 2, 9]
        // counted positions 1, 2, 4: correct 1 and 4 -> 2/3
        let acc = masked_accuracy(&[1, 5, 8, 2, 9], &[-100, 5, 7, -100, 9]);
        assert!((acc - 2.0 / 3.0).abs() < 1e-12);
        // No labelled position, or lengths that differ: NaN.
        assert!(masked_accuracy(&[0, 0], &[-100, -100]).is_nan());
        assert!(masked_accuracy(&[], &[]).is_nan());
        assert!(masked_accuracy(&[1], &[1, 2]).is_nan());
    }
}
