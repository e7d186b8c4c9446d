//! Row kernels: vectorisable `exp`, `erf`, activations, softmax and LayerNorm, and the
//! multi-threaded passes built on them (a linear layer's [`Epilogue`] as a pass of its own,
//! bias + residual + LayerNorm). The row kernels are `#[inline(always)]` so that the
//! `simd_fn!` functions that call them compile them for AVX2.
//!
//! `exp` and `erf` are polynomial approximations (`exp` relative error below 5e-7, `erf` absolute
//! error below 1e-6), well inside the 1e-4 parity budget and what the golden tests measure.

use rayon::prelude::*;

use crate::{simd_fn, Error, Result};

/// Rows per parallel task in the row passes.
const ROWS_PER_TASK: usize = 16;

/// The activations the row kernels compute (each stands for the transformers activations with
/// its formula; the caller maps the others to [`Act::Identity`] and applies them itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Exact GELU, `x Φ(x)` through `erf` (transformers' `gelu`, `gelu_python`).
    GeluErf,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_python_tanh`,
    /// `gelu_fast`, `gelu_accurate`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
    /// No activation.
    Identity,
}

/// Cephes-style `exp` for f32: exact to about 1 ulp on [-87, 88]; 0 below, clamped above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * LOG2E + 0.5).floor();
    // x - n ln2, with ln2 split in two for precision.
    let r = xc - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let r2 = r * r;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r2 + r + 1.0;
    // 2^n without a float-to-int conversion (Rust's saturating cast does not vectorise):
    // n + 127 + 2^23 holds n + 127 in its low mantissa bits, which the shift moves into
    // the exponent field.
    let scale = f32::from_bits((n + 8_388_735.0).to_bits() << 23);
    // Below the range the result is 0: a bit mask rather than a branch, so loops vectorise
    // (written `!(x < ..)` so that NaN propagates).
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let keep = u32::from(!(x < -87.0)).wrapping_neg();
    f32::from_bits((y * scale).to_bits() & keep)
}

/// Abramowitz & Stegun 7.1.26 `erf`: absolute error 1.5e-7 in exact arithmetic, below 1e-6
/// in f32.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// `tanh` through `exp`: `1 - 2 / (e^{2x} + 1)`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// `row[i] = act(row[i] + bias[i])`.
#[inline(always)]
pub fn bias_activation(row: &mut [f32], bias: &[f32], act: Act) {
    match act {
        Act::GeluErf => {
            for (v, b) in row.iter_mut().zip(bias) {
                let x = *v + b;
                *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Act::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2 / pi)
            for (v, b) in row.iter_mut().zip(bias) {
                let x = *v + b;
                *v = 0.5 * x * (1.0 + tanh(C * (x + 0.044_715 * x * x * x)));
            }
        }
        Act::Relu => {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
            }
        }
        Act::Identity => {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

/// What follows a linear layer's product on each output value: its bias, then an activation
/// or a factor on some columns. The packed GEMM applies it to each tile as the tile's last
/// `k` block is stored (while the tile is in L1); other GEMMs apply it as a pass of its own.
pub enum Epilogue<'a> {
    /// `act(v + bias[c])`.
    BiasAct { bias: &'a [f32], act: Act },
    /// `v + bias[c]`, then `× factor` in the columns `scaled` (Q/K/V: K divided by the
    /// attention scale).
    BiasScale {
        bias: &'a [f32],
        scaled: std::ops::Range<usize>,
        factor: f32,
    },
}

impl Epilogue<'_> {
    /// Output columns (the bias length).
    pub fn width(&self) -> usize {
        match self {
            Self::BiasAct { bias, .. } | Self::BiasScale { bias, .. } => bias.len(),
        }
    }

    /// Whether it fits an output of `width` columns.
    pub fn fits(&self, width: usize) -> bool {
        width == self.width()
            && match self {
                Self::BiasAct { .. } => true,
                Self::BiasScale { scaled, .. } => scaled.start <= scaled.end && scaled.end <= width,
            }
    }

    /// Applies it to `seg`, the output columns `col0..col0 + seg.len()` of one row.
    #[inline(always)]
    pub fn apply(&self, seg: &mut [f32], col0: usize) {
        let cols = col0..col0 + seg.len();
        match self {
            Self::BiasAct { bias, act } => bias_activation(seg, &bias[cols], *act),
            Self::BiasScale {
                bias,
                scaled,
                factor,
            } => {
                bias_activation(seg, &bias[cols.clone()], Act::Identity);
                let start = scaled.start.clamp(cols.start, cols.end) - col0;
                let end = scaled.end.clamp(cols.start, cols.end) - col0;
                for v in &mut seg[start..end] {
                    *v *= factor;
                }
            }
        }
    }
}

/// `row = LayerNorm(row + bias + residual)` with weight `gamma`, bias `beta`.
#[inline(always)]
pub fn add_layer_norm(
    row: &mut [f32],
    bias: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let n = row.len() as f32;
    let mut sum = 0.0f32;
    for ((v, b), r) in row.iter_mut().zip(bias).zip(residual) {
        *v = *v + b + r;
        sum += *v;
    }
    let mean = sum / n;
    let mut sq = 0.0f32;
    for v in row.iter() {
        let d = v - mean;
        sq += d * d;
    }
    let inv = 1.0 / (sq / n + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Lanes of the explicit accumulators below (the reductions vectorise only when written
/// lane-wise: float addition is not associative).
const LANES: usize = 8;

/// In-place softmax of one row.
#[inline(always)]
pub fn softmax(row: &mut [f32]) {
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in lane_max.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lane_max)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut lane_sum = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, v) in lane_sum.iter_mut().zip(chunk.iter_mut()) {
            *v = exp(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = lane_sum.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Applies `epilogue` to every row of `out` (rows of the epilogue's width), as a
/// multi-threaded pass: for the GEMMs that do not apply it tile by tile.
pub fn epilogue_pass(out: &mut [f32], epilogue: &Epilogue) -> Result<()> {
    let width = epilogue.width();
    if !epilogue.fits(width) || width == 0 || !out.len().is_multiple_of(width) {
        return Err(Error::shape(
            "epilogue pass",
            format!(
                "a bias of {width} values does not fit an output of {} values",
                out.len()
            ),
        ));
    }
    out.par_chunks_mut(width * ROWS_PER_TASK)
        .for_each(|block| epilogue_rows(block, epilogue));
    Ok(())
}

/// The parameters of a LayerNorm: `gamma` (weight), `beta` (bias), `eps`.
#[derive(Clone, Copy, Debug)]
pub struct Norm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

/// `rows = LayerNorm(rows + bias + residual)`, row by row, as a multi-threaded pass (rows of
/// `norm.gamma.len()` values).
pub fn add_norm(rows: &mut [f32], bias: &[f32], residual: &[f32], norm: Norm) -> Result<()> {
    let width = norm.gamma.len();
    if width == 0
        || bias.len() != width
        || norm.beta.len() != width
        || residual.len() != rows.len()
        || !rows.len().is_multiple_of(width)
    {
        return Err(Error::shape(
            "add + LayerNorm pass",
            format!(
                "rows of {} values, residual of {}, bias {}, weight {}, bias {} do not agree",
                rows.len(),
                residual.len(),
                bias.len(),
                width,
                norm.beta.len()
            ),
        ));
    }
    rows.par_chunks_mut(width * ROWS_PER_TASK)
        .zip(residual.par_chunks(width * ROWS_PER_TASK))
        .for_each(|(block, res)| add_norm_rows(block, res, bias, norm.gamma, norm.beta, norm.eps));
    Ok(())
}

simd_fn! {
fn epilogue_rows(block: &mut [f32], epilogue: &Epilogue) {
    for row in block.chunks_exact_mut(epilogue.width()) {
        epilogue.apply(row, 0);
    }
}
}

simd_fn! {
fn add_norm_rows(
    block: &mut [f32],
    residual: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let width = gamma.len();
    for (row, r) in block.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
        add_layer_norm(row, bias, r, gamma, beta, eps);
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_std() {
        let mut worst_exp = 0.0f32;
        let mut worst_erf = 0.0f32;
        for i in -9000..9000 {
            let x = i as f32 * 0.01;
            let e = exp(x);
            let want = x.exp();
            if (-87.0..=88.0).contains(&x) {
                worst_exp = worst_exp.max(((e - want) / want).abs());
            }
            let g = erf(x / 30.0);
            let want = series_erf(f64::from(x / 30.0)) as f32;
            worst_erf = worst_erf.max((g - want).abs());
        }
        println!("exp max rel err {worst_exp:e}, erf max abs err {worst_erf:e}");
        assert!(worst_exp < 5e-7, "exp rel err {worst_exp}");
        assert!(worst_erf < 1e-6, "erf abs err {worst_erf}");
        assert!((erf(4.0) - 1.0).abs() < 1e-7 && (erf(-9.0) + 1.0).abs() < 1e-7);
        assert_eq!(exp(-1e30), 0.0);
        assert!(exp(100.0).is_finite());
    }

    /// erf by its Maclaurin series in f64 (accurate to ~1e-12 for |x| <= 3).
    fn series_erf(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn softmax_of_masked_row_is_uniform_or_zero() {
        let mut row = [f32::MIN, f32::MIN, f32::MIN];
        softmax(&mut row);
        assert!(row.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-7));
        let mut row = [1.0, f32::MIN + 1.0, 2.0];
        softmax(&mut row);
        assert_eq!(row[1], 0.0);
        assert!((row[0] + row[2] - 1.0).abs() < 1e-6);
    }
}
