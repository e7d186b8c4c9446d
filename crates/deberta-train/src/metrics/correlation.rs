//! Correlation coefficients for regression tasks (STS-B): `scipy.stats.pearsonr` and
//! `scipy.stats.spearmanr`, the statistic only (no p-value).

/// Pearson's correlation coefficient, following `scipy.stats.pearsonr` (scipy 1.17).
///
/// The deviations from the means are scaled by their largest magnitude before taking norms
/// (scipy's guard against overflow), `r = (xm/|xm|)·(ym/|ym|)` is clipped to `[-1, 1]`, and
/// two points give exactly `±1`.
///
/// NaN (scipy's value, which it returns with a `ConstantInputWarning`) when either input is
/// constant (every value equal to the first, so zero variance); NaN also where scipy raises:
/// fewer than 2 points, or lengths that differ. A NaN in the input gives NaN.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    if n != y.len() || n < 2 || is_constant(x) || is_constant(y) {
        return f64::NAN;
    }
    let xm = deviations(x);
    let ym = deviations(y);
    let normx = scaled_norm(&xm);
    let normy = scaled_norm(&ym);
    let r: f64 = xm
        .iter()
        .zip(&ym)
        .map(|(a, b)| (a / normx) * (b / normy))
        .sum();
    let r = r.clamp(-1.0, 1.0);
    if n == 2 {
        r.round()
    } else {
        r
    }
}

/// Spearman's rank correlation, following `scipy.stats.spearmanr` (scipy 1.17): both inputs
/// are ranked with ties given their average rank (`scipy.stats.rankdata(method="average")`),
/// then the ranks are correlated as `numpy.corrcoef` does (`cov / (σx·σy)`, clipped to
/// `[-1, 1]`).
///
/// NaN when either input is constant (scipy warns and returns NaN), when there are fewer than
/// 2 points (scipy returns NaN), when the lengths differ (scipy raises), or when an input holds
/// a NaN (scipy's default `nan_policy="propagate"`).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    if n != y.len() || n < 2 || is_constant(x) || is_constant(y) {
        return f64::NAN;
    }
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let rx = average_ranks(x);
    let ry = average_ranks(y);
    corrcoef(&rx, &ry)
}

/// 1-based ranks with ties sharing the mean of the ranks they span
/// (`scipy.stats.rankdata(values, method="average")`). NaN-free input expected.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // positions start..end (0-based) hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Every value equal to the first (scipy's constant-input test, `all(x == x[0])`).
fn is_constant(values: &[f64]) -> bool {
    values.iter().all(|&v| v == values[0])
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn deviations(values: &[f64]) -> Vec<f64> {
    let m = mean(values);
    values.iter().map(|v| v - m).collect()
}

/// `max|v| · ‖v / max|v|‖₂`: the Euclidean norm without premature overflow.
fn scaled_norm(values: &[f64]) -> f64 {
    let max = values.iter().fold(0.0_f64, |acc, v| acc.max(v.abs()));
    let sum_sq: f64 = values.iter().map(|v| (v / max) * (v / max)).sum();
    max * sum_sq.sqrt()
}

/// `numpy.corrcoef(x, y)[0, 1]`: the covariance divided by both standard deviations, clipped.
fn corrcoef(x: &[f64], y: &[f64]) -> f64 {
    let xm = deviations(x);
    let ym = deviations(y);
    let dof = (x.len() - 1) as f64;
    let cov: f64 = xm.iter().zip(&ym).map(|(a, b)| a * b).sum::<f64>() / dof;
    let var_x: f64 = xm.iter().map(|a| a * a).sum::<f64>() / dof;
    let var_y: f64 = ym.iter().map(|b| b * b).sum::<f64>() / dof;
    (cov / var_x.sqrt() / var_y.sqrt()).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12
    }

    #[test]
    fn pearson_hand_computed() {
        // x = [1,2,3,4], y = [2,1,4,3]: means 2.5, 2.5
        // xm = [-1.5,-0.5,0.5,1.5], ym = [-0.5,-1.5,1.5,0.5]
        // Σxm·ym = 0.75+0.75+0.75+0.75 = 3; Σxm² = Σym² = 2.25+0.25+0.25+2.25 = 5
        // r = 3/5 = 0.6; scipy 1.17: scipy.stats.pearsonr(x, y).statistic == 0.6
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]);
        assert!(close(r, 0.6), "{r}");
        // Exact linear relation, negative slope: -1 (scipy: -0.9999999999999998).
        let r = pearson(&[0.0, 1.0, 2.0], &[5.0, 3.0, 1.0]);
        assert!(close(r, -1.0), "{r}");
        // Two points: exactly ±1 (scipy rounds the n == 2 case).
        assert_eq!(pearson(&[1.0, 2.0], &[3.0, 5.0]), 1.0);
        assert_eq!(pearson(&[1.0, 2.0], &[5.0, 3.0]), -1.0);
    }

    #[test]
    fn pearson_does_not_overflow_on_huge_values() {
        // Squaring 1e200 overflows; the scaled norm does not. Same shape as the first case,
        // times 1e200 -> still 0.6 (scipy: 0.6000000000000001).
        let x: Vec<f64> = [1.0, 2.0, 3.0, 4.0].iter().map(|v| v * 1e200).collect();
        let y: Vec<f64> = [2.0, 1.0, 4.0, 3.0].iter().map(|v| v * 1e200).collect();
        assert!(close(pearson(&x, &y), 0.6));
    }

    #[test]
    fn pearson_undefined_cases_are_nan() {
        // Zero variance: scipy returns nan with a ConstantInputWarning.
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(pearson(&[1.0, 2.0, 3.0], &[7.0, 7.0, 7.0]).is_nan());
        // Fewer than two points / mismatched lengths: scipy raises ValueError.
        assert!(pearson(&[], &[]).is_nan());
        assert!(pearson(&[1.0], &[2.0]).is_nan());
        assert!(pearson(&[1.0, 2.0], &[1.0, 2.0, 3.0]).is_nan());
        // NaN propagates.
        assert!(pearson(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn average_ranks_of_ties() {
        // sorted: 10 (rank 1), 20,20 (ranks 2,3 -> 2.5), 30 (4), 40,40,40 (5,6,7 -> 6)
        // scipy.stats.rankdata([20,10,40,20,40,30,40]) == [2.5,1,6,2.5,6,4,6]
        let r = average_ranks(&[20.0, 10.0, 40.0, 20.0, 40.0, 30.0, 40.0]);
        assert_eq!(r, vec![2.5, 1.0, 6.0, 2.5, 6.0, 4.0, 6.0]);
    }

    #[test]
    fn spearman_hand_computed_with_ties() {
        // x = [1,2,2,3,4] -> ranks [1, 2.5, 2.5, 4, 5]
        // y = [1,3,2,4,4] -> ranks [1, 3, 2, 4.5, 4.5]
        // means: 3 and 3
        // dx = [-2,-0.5,-0.5,1,2], dy = [-2,0,-1,1.5,1.5]
        // Σdx·dy = 4 + 0 + 0.5 + 1.5 + 3 = 9
        // Σdx² = 4+0.25+0.25+1+4 = 9.5; Σdy² = 4+0+1+2.25+2.25 = 9.5
        // rho = 9/9.5 = 0.947368421052631...
        // scipy 1.17: scipy.stats.spearmanr(x, y).statistic == 0.9473684210526317
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0, 4.0]);
        assert!(close(rho, 9.0 / 9.5), "{rho}");
        // Monotone but non-linear: 1 (Pearson would be below 1).
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 4.0, 9.0, 100.0]);
        assert!(close(rho, 1.0), "{rho}");
        // Two points in reverse order: -1 (scipy: -0.9999999999999999).
        assert!(close(spearman(&[1.0, 2.0], &[2.0, 1.0]), -1.0));
    }

    #[test]
    fn spearman_undefined_cases_are_nan() {
        assert!(spearman(&[], &[]).is_nan());
        assert!(spearman(&[1.0], &[2.0]).is_nan());
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(spearman(&[1.0, 2.0], &[1.0]).is_nan());
        assert!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]).is_nan());
    }
}
