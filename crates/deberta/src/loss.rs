//! The losses of the task heads, as PyTorch computes them (mean reduction).

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// PyTorch's default `ignore_index`.
pub const IGNORE_INDEX: i64 = -100;

/// Integer class labels as a host vector (floats are truncated, as `labels.long()` does).
pub fn label_ids(labels: &Tensor) -> Result<Vec<i64>> {
    Ok(labels
        .to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?)
}

/// `CrossEntropyLoss(ignore_index)` over `logits [N, C]` and `labels [N]`: the mean of
/// `-log_softmax(logits)[n, labels[n]]` over rows whose label is not `ignore_index`. Every other
/// label must be a class id. All rows ignored gives NaN, as in PyTorch.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &[i64],
    ignore_index: i64,
    what: &str,
) -> Result<Tensor> {
    let (n, classes) = logits.dims2()?;
    if labels.len() != n {
        return Err(Error::input(format!(
            "{what}: {} labels for {n} predictions",
            labels.len()
        )));
    }
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (row, &label) in labels.iter().enumerate() {
        if label == ignore_index {
            continue;
        }
        if label < 0 || label as usize >= classes {
            return Err(Error::input(format!(
                "{what}: label {label} is not a class id in 0..{classes} (or {ignore_index} to ignore)"
            )));
        }
        rows.push(row as u32);
        targets.push(label as u32);
    }
    if rows.is_empty() {
        return Ok(Tensor::new(f32::NAN, logits.device())?);
    }
    let device = logits.device();
    let count = rows.len();
    let rows = Tensor::from_vec(rows, count, device)?;
    let targets = Tensor::from_vec(targets, (count, 1), device)?;
    let log_probs = candle_nn::ops::log_softmax(&logits.index_select(&rows, 0)?, D::Minus1)?;
    let picked = log_probs.gather(&targets, 1)?; // [count, 1]
    Ok(picked.mean_all()?.neg()?)
}

/// `-(log_softmax(logits) * labels).sum(-1).mean()` for soft labels `[N, C]`.
pub fn soft_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    same_shape(logits, labels, "soft labels")?;
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let labels = labels.to_dtype(DType::F32)?;
    Ok((log_probs * labels)?.sum(D::Minus1)?.mean_all()?.neg()?)
}

/// `MSELoss` (mean of squared differences); shapes must agree.
pub fn mse(predictions: &Tensor, targets: &Tensor) -> Result<Tensor> {
    same_shape(predictions, targets, "regression labels")?;
    let diff = (predictions - targets.to_dtype(DType::F32)?)?;
    Ok(diff.sqr()?.mean_all()?)
}

/// `BCEWithLogitsLoss`: mean of `max(x, 0) - x*y + log(1 + exp(-|x|))`.
pub fn bce_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    same_shape(logits, labels, "multi-label labels")?;
    let y = labels.to_dtype(DType::F32)?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let loss = ((logits.relu()? - (logits * y)?)? + softplus)?;
    Ok(loss.mean_all()?)
}

fn same_shape(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::input(format!(
            "{what} have shape {:?}, the logits {:?}",
            b.dims(),
            a.dims()
        )));
    }
    Ok(())
}
