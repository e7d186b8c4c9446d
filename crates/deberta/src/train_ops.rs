//! Fused training-mode kernels with a hand-written backward, for contiguous f32 tensors on the
//! CPU: LayerNorm (input, weight and bias gradients in one pass) and the attention's masked
//! softmax. Each replaces about ten primitive ops and their autograd nodes (and the temporary
//! tensors both allocate) with one op in the graph.
//!
//! The arithmetic is PyTorch's: LayerNorm with the biased variance (row statistics in f64),
//! `dx = rstd * (g w - mean(g w) - x̂ mean(g w x̂))`; softmax max-subtracted, with masked
//! scores taking no part and receiving no gradient (`masked_fill(finfo.min)` then softmax:
//! a fully masked row is uniform).
//!
//! Other dtypes and devices keep the differentiable primitives in [`crate::nn`].

use candle_core::cpu::erf::erf_f32;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::Result;

/// Whether the fused kernels apply to these tensors.
pub(crate) fn applies(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Rows per parallel task for rows of `width` elements: about 16K elements each.
fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = s else {
        candle_core::bail!("{op}: f32 storage expected")
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous input expected")
    };
    Ok(&values[a..b])
}

/// Runs `f` on the values of a contiguous f32 CPU tensor (copied first if it is not one).
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(values)), Some((a, b))) => Ok(f(&values[a..b])),
        _ => Err(crate::Error::input(
            "fused training op: f32 CPU tensor expected",
        )),
    }
}

/// LayerNorm over the last dimension of `x` with `weight` and `bias` (all f32 on the CPU).
pub(crate) fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let x = x.contiguous()?;
    Ok(x.apply_op3(weight, bias, LayerNormOp { eps })?)
}

struct LayerNormOp {
    eps: f64,
}

/// Row statistics: mean and `1 / sqrt(var + eps)`.
fn row_stats(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&v| {
            let c = v as f64 - mean;
            c * c
        })
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, b) = (
            f32_slice(s1, l1, name)?,
            f32_slice(s2, l2, name)?,
            f32_slice(s3, l3, name)?,
        );
        let h = w.len();
        if h == 0 || b.len() != h || l1.dims().last() != Some(&h) {
            candle_core::bail!("{name}: weight and bias must match the last dimension")
        }
        let mut out = vec![0f32; x.len()];
        let chunk = rows_per_task(h) * h;
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(out, x)| {
                for (o, row) in out.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
                    let (mean, rstd) = row_stats(row, self.eps);
                    for (((o, &v), &w), &b) in o.iter_mut().zip(row).zip(w).zip(b) {
                        *o = (v - mean) * rstd * w + b;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = w.elem_count();
        let eps = self.eps;
        let run = || -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
            with_values(x, |x| {
                with_values(w, |w| {
                    with_values(grad, |g| layer_norm_bwd(x, w, g, h, eps))
                })
            })?
            .and_then(|r| r)
            .and_then(|r| r)
        };
        let (dx, dw, db) = run().map_err(candle_core::Error::wrap)?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, w.shape(), dev)?),
        ))
    }
}

fn layer_norm_bwd(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    h: usize,
    eps: f64,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    if x.len() != g.len() || w.len() != h || h == 0 {
        return Err(crate::Error::input(
            "layer-norm-train: gradient shape mismatch",
        ));
    }
    let mut dx = vec![0f32; x.len()];
    let chunk = rows_per_task(h) * h;
    let (dw, db) = dx
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
        .map(|(dx, (x, g))| {
            let mut dw = vec![0f64; h];
            let mut db = vec![0f64; h];
            let mut xhat = vec![0f32; h];
            for ((dx, x), g) in dx
                .chunks_exact_mut(h)
                .zip(x.chunks_exact(h))
                .zip(g.chunks_exact(h))
            {
                let (mean, rstd) = row_stats(x, eps);
                let (mut sum_gw, mut sum_gwx) = (0f64, 0f64);
                for i in 0..h {
                    let xh = (x[i] - mean) * rstd;
                    xhat[i] = xh;
                    let gw = g[i] * w[i];
                    sum_gw += gw as f64;
                    sum_gwx += (gw * xh) as f64;
                    dw[i] += (g[i] * xh) as f64;
                    db[i] += g[i] as f64;
                }
                let mean_gw = (sum_gw / h as f64) as f32;
                let mean_gwx = (sum_gwx / h as f64) as f32;
                for i in 0..h {
                    dx[i] = rstd * (g[i] * w[i] - mean_gw - xhat[i] * mean_gwx);
                }
            }
            (dw, db)
        })
        .collect::<Vec<_>>()
        .into_iter()
        // In chunk order: the sums do not depend on how the pool scheduled the chunks.
        .fold(
            (vec![0f64; h], vec![0f64; h]),
            |(mut aw, mut ab), (bw, bb)| {
                for i in 0..h {
                    aw[i] += bw[i];
                    ab[i] += bb[i];
                }
                (aw, ab)
            },
        );
    Ok((
        dx,
        dw.into_iter().map(|v| v as f32).collect(),
        db.into_iter().map(|v| v as f32).collect(),
    ))
}

/// Softmax over the last dimension of `scores` where `keep` (u8, its rows repeating over the
/// leading rows of `scores`) is nonzero; masked entries are 0 and get no gradient, a fully
/// masked row is uniform. `scores` f32 on the CPU.
pub(crate) fn masked_softmax(scores: &Tensor, keep: &Tensor) -> Result<Tensor> {
    let scores = scores.contiguous()?;
    let keep = keep.contiguous()?;
    Ok(scores.apply_op2(&keep, MaskedSoftmaxOp)?)
}

struct MaskedSoftmaxOp;

impl CustomOp2 for MaskedSoftmaxOp {
    fn name(&self) -> &'static str {
        "masked-softmax-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let x = f32_slice(s1, l1, name)?;
        let CpuStorage::U8(keep) = s2 else {
            candle_core::bail!("{name}: u8 mask expected")
        };
        let Some((k0, k1)) = l2.contiguous_offsets() else {
            candle_core::bail!("{name}: contiguous mask expected")
        };
        let keep = &keep[k0..k1];
        let l = l1.dims().last().copied().unwrap_or(0);
        if l == 0
            || keep.is_empty()
            || !keep.len().is_multiple_of(l)
            || !x.len().is_multiple_of(keep.len())
        {
            candle_core::bail!("{name}: the mask's rows must repeat over the scores' rows")
        }
        let mut out = vec![0f32; x.len()];
        let chunk = rows_per_task(l) * l;
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .enumerate()
            .for_each(|(c, (out, x))| {
                for (r, (o, row)) in out.chunks_exact_mut(l).zip(x.chunks_exact(l)).enumerate() {
                    let start = (c * chunk + r * l) % keep.len();
                    softmax_row(row, &keep[start..start + l], o);
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        keep: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let keep_values = keep.flatten_all()?.to_vec1::<u8>()?;
        let run = || -> Result<Vec<f32>> {
            with_values(res, |y| {
                with_values(grad, |g| masked_softmax_bwd(y, g, &keep_values, res.dims()))
            })?
            .and_then(|r| r)
        };
        let dx = run().map_err(candle_core::Error::wrap)?;
        Ok((Some(Tensor::from_vec(dx, res.shape(), res.device())?), None))
    }
}

fn softmax_row(row: &[f32], keep: &[u8], out: &mut [f32]) {
    if keep.iter().all(|&k| k == 0) {
        let u = 1.0 / row.len() as f32;
        out.iter_mut().for_each(|o| *o = u);
        return;
    }
    let mut max = f32::NEG_INFINITY;
    for (&v, &k) in row.iter().zip(keep) {
        if k != 0 && v > max {
            max = v;
        }
    }
    let mut sum = 0f32;
    for ((o, &v), &k) in out.iter_mut().zip(row).zip(keep) {
        let e = if k != 0 { (v - max).exp() } else { 0.0 };
        *o = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

fn masked_softmax_bwd(y: &[f32], g: &[f32], keep: &[u8], dims: &[usize]) -> Result<Vec<f32>> {
    let l = dims.last().copied().unwrap_or(0);
    if l == 0 || y.len() != g.len() || keep.is_empty() || !y.len().is_multiple_of(keep.len()) {
        return Err(crate::Error::input(
            "masked-softmax-train: gradient shape mismatch",
        ));
    }
    let mut dx = vec![0f32; y.len()];
    let chunk = rows_per_task(l) * l;
    dx.par_chunks_mut(chunk)
        .zip(y.par_chunks(chunk).zip(g.par_chunks(chunk)))
        .enumerate()
        .for_each(|(c, (dx, (y, g)))| {
            for (r, ((dx, y), g)) in dx
                .chunks_exact_mut(l)
                .zip(y.chunks_exact(l))
                .zip(g.chunks_exact(l))
                .enumerate()
            {
                let start = (c * chunk + r * l) % keep.len();
                let keep = &keep[start..start + l];
                let dot: f32 = y.iter().zip(g).map(|(&y, &g)| y * g).sum();
                for (((dx, &y), &g), &k) in dx.iter_mut().zip(y).zip(g).zip(keep) {
                    *dx = if k != 0 { y * (g - dot) } else { 0.0 };
                }
            }
        });
    Ok(dx)
}

/// `gelu` (erf form, transformers' `"gelu"`) of an f32 CPU tensor, with its derivative
/// `Φ(x) + x φ(x)` as the backward. The forward is candle's `gelu_erf` element for element.
pub(crate) fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(GeluErfOp)?)
}

struct GeluErfOp;

/// Elements per parallel task of the element-wise kernels.
const ELEMENTS_PER_TASK: usize = 1 << 14;

impl candle_core::CustomOp1 for GeluErfOp {
    fn name(&self) -> &'static str {
        "gelu-erf-train"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(x.par_chunks(ELEMENTS_PER_TASK))
            .for_each(|(out, x)| {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v;
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // 1 / sqrt(2 pi)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let run = || -> Result<Vec<f32>> {
            with_values(x, |x| {
                with_values(grad, |g| {
                    let mut dx = vec![0f32; x.len()];
                    dx.par_chunks_mut(ELEMENTS_PER_TASK)
                        .zip(x.par_chunks(ELEMENTS_PER_TASK))
                        .zip(g.par_chunks(ELEMENTS_PER_TASK))
                        .for_each(|((dx, x), g)| {
                            for ((d, &v), &g) in dx.iter_mut().zip(x).zip(g) {
                                let cdf = 0.5 * (1. + erf_f32(v * std::f32::consts::FRAC_1_SQRT_2));
                                let pdf = INV_SQRT_2PI * (-0.5 * v * v).exp();
                                *d = g * (cdf + v * pdf);
                            }
                        });
                    dx
                })
            })?
        };
        let dx = run().map_err(candle_core::Error::wrap)?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// `y + bias` over the last dimension of an f32 CPU tensor; the backward passes the gradient
/// through to `y` and sums it over the rows (in parallel, f64 partial sums) for `bias`, where
/// candle's broadcast backward would reduce with a strided sum.
pub(crate) fn bias_add(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(y.contiguous()?.apply_op2(bias, BiasAddOp)?)
}

struct BiasAddOp;

impl CustomOp2 for BiasAddOp {
    fn name(&self) -> &'static str {
        "bias-add-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (y, b) = (f32_slice(s1, l1, name)?, f32_slice(s2, l2, name)?);
        let h = b.len();
        if h == 0 || l1.dims().last() != Some(&h) {
            candle_core::bail!("{name}: the bias must match the last dimension")
        }
        let mut out = vec![0f32; y.len()];
        let chunk = rows_per_task(h) * h;
        out.par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk))
            .for_each(|(out, y)| {
                for (o, row) in out.chunks_exact_mut(h).zip(y.chunks_exact(h)) {
                    for ((o, &v), &b) in o.iter_mut().zip(row).zip(b) {
                        *o = v + b;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let h = bias.elem_count();
        let db = with_values(grad, |g| column_sums(g, h))
            .map_err(candle_core::Error::wrap)?
            .map_err(candle_core::Error::wrap)?;
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(db, bias.shape(), bias.device())?),
        ))
    }
}

/// Sums of the columns of a row-major `[rows, h]` slice.
fn column_sums(g: &[f32], h: usize) -> Result<Vec<f32>> {
    if h == 0 || !g.len().is_multiple_of(h) {
        return Err(crate::Error::input(
            "bias-add-train: gradient shape mismatch",
        ));
    }
    let chunk = rows_per_task(h) * h;
    let sums = g
        .par_chunks(chunk)
        .map(|g| {
            let mut acc = vec![0f64; h];
            for row in g.chunks_exact(h) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v as f64;
                }
            }
            acc
        })
        .collect::<Vec<_>>()
        .into_iter()
        // In chunk order: the sums do not depend on how the pool scheduled the chunks.
        .fold(vec![0f64; h], |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
            a
        });
    Ok(sums.into_iter().map(|v| v as f32).collect())
}

/// `src [R, C]` gathered along its columns by `index [K]` (u32, each below `C`): `[R, K]`, with
/// the scatter-add backward done row by row in parallel (candle's `index_select` backward
/// zero-fills a copy of `src` and index-adds into it serially).
pub(crate) fn gather_columns(src: &Tensor, index: &Tensor) -> Result<Tensor> {
    Ok(src
        .contiguous()?
        .apply_op2(&index.contiguous()?, GatherColumnsOp)?)
}

struct GatherColumnsOp;

fn u32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [u32]> {
    let CpuStorage::U32(values) = s else {
        candle_core::bail!("{op}: u32 index expected")
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous index expected")
    };
    Ok(&values[a..b])
}

impl CustomOp2 for GatherColumnsOp {
    fn name(&self) -> &'static str {
        "gather-columns-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let src = f32_slice(s1, l1, name)?;
        let index = u32_slice(s2, l2, name)?;
        let &[rows, cols] = l1.dims() else {
            candle_core::bail!("{name}: a 2-D source expected")
        };
        if index.iter().any(|&i| i as usize >= cols) {
            candle_core::bail!("{name}: index out of range")
        }
        let k = index.len();
        let mut out = vec![0f32; rows * k];
        if k > 0 && cols > 0 {
            out.par_chunks_mut(k)
                .zip(src.par_chunks(cols))
                .for_each(|(out, row)| {
                    for (o, &i) in out.iter_mut().zip(index) {
                        *o = row[i as usize];
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, k))))
    }

    fn bwd(
        &self,
        src: &Tensor,
        index: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, cols) = src.dims2()?;
        let index = index.to_vec1::<u32>()?;
        let k = index.len();
        if grad.elem_count() != rows * k || index.iter().any(|&i| i as usize >= cols) {
            candle_core::bail!("gather-columns-train: gradient shape mismatch")
        }
        let d = with_values(grad, |g| {
            let mut d = vec![0f32; rows * cols];
            if k > 0 && cols > 0 {
                d.par_chunks_mut(cols)
                    .zip(g.par_chunks(k))
                    .for_each(|(d, g)| {
                        for (&i, &v) in index.iter().zip(g) {
                            d[i as usize] += v;
                        }
                    });
            }
            d
        })
        .map_err(candle_core::Error::wrap)?;
        Ok((Some(Tensor::from_vec(d, (rows, cols), src.device())?), None))
    }
}
