//! One `DebertaV2Layer` on flat buffers: fused QKV GEMM, attention, output GEMM with
//! bias + residual + LayerNorm, intermediate GEMM with bias + activation, output GEMM with
//! bias + residual + LayerNorm.
//!
//! Mirrors `DebertaV2Layer.forward`:
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L378>

use candle_core::{Device, Tensor};
use candle_nn::{LayerNorm, Linear};
use rayon::prelude::*;

use super::attention::{attention, Dims, Relative};
use super::avx512_linear::{self, Avx512Linear, Kind};
use super::bf16;
use super::context::AttentionContext;
use super::gemm::linear;
use super::int8::{Kernel, QuantLinear};
use super::rows::{self, Epilogue};
use super::sgemm::PackedLinear;
use super::{check_weight, simd_fn, View};
use crate::activation::Activation;
use crate::LinearFormat;
use crate::{Error, Result};

/// Rows per parallel task in the element-wise passes.
const ROWS_PER_TASK: usize = 16;

/// The weights of one layer, borrowed from the candle modules that own them.
pub struct LayerParams<'a> {
    /// `[3*H*d, hidden]` fused query/key/value projection.
    pub qkv: &'a Linear,
    /// Position keys / scale `[H, 2S, d]` (c2p) and position queries `[H, 2S, d]` (p2c).
    pub pos_key: Option<&'a Tensor>,
    pub pos_query: Option<&'a Tensor>,
    pub heads: usize,
    pub head_size: usize,
    pub scale: f64,
    pub dense: &'a Linear,
    pub attention_norm: &'a LayerNorm,
    pub intermediate: &'a Linear,
    pub act: Activation,
    pub output: &'a Linear,
    pub output_norm: &'a LayerNorm,
    /// `qkv`, `dense`, `intermediate` and `output` in a faster format (int8, bf16 or packed f32),
    /// when prepared; otherwise the f32 weights go through the `gemm` crate.
    pub prepared: Option<&'a PreparedLayer>,
}

/// The four linear layers of a layer in a format the fast path multiplies faster: int8
/// ([`super::int8`]), bf16 ([`super::bf16`]) or f32 packed for the AVX2 kernel
/// ([`super::sgemm`]).
pub struct PreparedLayer {
    qkv: PreparedLinear,
    dense: PreparedLinear,
    intermediate: PreparedLinear,
    output: PreparedLinear,
}

enum PreparedLinear {
    Int8(QuantLinear),
    /// f32 or bf16 panels for the AVX2 kernel.
    Packed(PackedLinear),
    /// f32 or bf16 panels for the AVX-512 kernels (their portable twins with
    /// `DEBERTA_CPU_AVX512=portable`).
    Avx512(Avx512Linear),
    /// The weight rounded to bf16, kept as f32 `[out, in]` for the `gemm` crate (CPUs
    /// without the AVX2 kernel).
    Bf16Gemm {
        weight: Vec<f32>,
        in_dim: usize,
    },
}

impl PreparedLayer {
    /// Quantises the four weights (`qkv`, `dense`, `intermediate`, `output`) to int8.
    pub fn int8(linears: [&Linear; 4]) -> Result<Self> {
        Self::convert(linears, |w, out_dim, in_dim| {
            Ok(PreparedLinear::Int8(QuantLinear::new(w, out_dim, in_dim)?))
        })
    }

    /// Packs the four f32 weights for the kernel [`packing`] picks; `None` where it picks
    /// none (the `gemm` crate then multiplies the f32 weights as they are).
    pub fn packed_f32(linears: [&Linear; 4]) -> Result<Option<Self>> {
        let packing = packing(Kind::F32);
        if packing == Packing::None {
            return Ok(None);
        }
        Self::convert(linears, |w, out_dim, in_dim| {
            Ok(match packing {
                Packing::Avx512 => {
                    PreparedLinear::Avx512(Avx512Linear::new(w, out_dim, in_dim, Kind::F32)?)
                }
                Packing::Avx2 | Packing::None => {
                    PreparedLinear::Packed(PackedLinear::new(w, out_dim, in_dim)?)
                }
            })
        })
        .map(Some)
    }

    /// Rounds the four weights to bf16 ([`super::bf16`]): packed for the kernel [`packing`]
    /// picks (bf16 pairs for `vdpbf16ps`, or bf16 panels for the AVX2 kernel), else kept as
    /// f32 for the `gemm` crate.
    pub fn bf16(linears: [&Linear; 4]) -> Result<Self> {
        let packing = packing(Kind::Bf16);
        Self::convert(linears, |w, out_dim, in_dim| {
            Ok(match packing {
                Packing::Avx512 => {
                    PreparedLinear::Avx512(Avx512Linear::new(w, out_dim, in_dim, Kind::Bf16)?)
                }
                Packing::Avx2 => {
                    PreparedLinear::Packed(PackedLinear::new_bf16(w, out_dim, in_dim)?)
                }
                Packing::None => {
                    check_weight("bf16 linear", w, out_dim, in_dim)?;
                    PreparedLinear::Bf16Gemm {
                        weight: w.iter().map(|&v| bf16::round(v)).collect(),
                        in_dim,
                    }
                }
            })
        })
    }

    fn convert(
        [qkv, dense, intermediate, output]: [&Linear; 4],
        convert: impl Fn(&[f32], usize, usize) -> Result<PreparedLinear>,
    ) -> Result<Self> {
        let one = |l: &Linear, name: &'static str| -> Result<PreparedLinear> {
            let (out_dim, in_dim) = l.weight().dims2()?;
            let w = l.weight().contiguous()?;
            let view = View::new(&w, name)?;
            convert(view.slice()?, out_dim, in_dim)
                .map_err(|e| Error::Input(format!("{name}: {e}")))
        };
        Ok(Self {
            qkv: one(qkv, "attention.self.{query,key,value}_proj")?,
            dense: one(dense, "attention.output.dense")?,
            intermediate: one(intermediate, "intermediate.dense")?,
            output: one(output, "output.dense")?,
        })
    }
}

/// What the fast path multiplies the linear layers in `format` with on this CPU (a name for
/// reports such as `deberta bench`'s).
pub fn linear_kernel(format: LinearFormat) -> &'static str {
    if super::disabled() {
        return "candle (DEBERTA_CPU_FAST=0)";
    }
    let kind = match format {
        LinearFormat::F32 => Kind::F32,
        LinearFormat::Bf16 => Kind::Bf16,
        LinearFormat::Int8 => return Kernel::for_this_cpu().name(),
    };
    match (packing(kind), kind) {
        (Packing::Avx512, _) => avx512_linear::kernel(kind),
        (Packing::Avx2, Kind::F32) => "avx2-fma packed f32",
        (Packing::Avx2, Kind::Bf16) => "avx2-fma packed bf16",
        (Packing::None, Kind::F32) => "gemm crate f32",
        (Packing::None, Kind::Bf16) => "gemm crate on bf16-rounded f32",
    }
}

/// Which packed copy the f32 or bf16 linear layers get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Packing {
    /// For the AVX-512 kernels ([`avx512_linear`]).
    Avx512,
    /// For the AVX2 kernel ([`super::sgemm`]).
    Avx2,
    /// None: the `gemm` crate multiplies the (rounded) f32 weights.
    None,
}

/// The AVX-512 kernels where [`avx512_linear::chosen`], else the AVX2 kernel where this CPU
/// runs it, else none; none with `DEBERTA_CPU_PACKED=0`.
fn packing(kind: Kind) -> Packing {
    if packing_off() {
        Packing::None
    } else if avx512_linear::chosen(kind) {
        Packing::Avx512
    } else if super::sgemm::available() {
        Packing::Avx2
    } else {
        Packing::None
    }
}

/// `DEBERTA_CPU_PACKED=0`: no packed f32 or bf16 weights; the `gemm` crate multiplies them.
fn packing_off() -> bool {
    std::env::var("DEBERTA_CPU_PACKED").is_ok_and(|v| v == "0")
}

/// `out = epilogue(x · wᵀ)` through the prepared copy when there is one (the packed and int8
/// GEMMs apply the epilogue tile by tile), else the f32 weight through the `gemm` crate.
///
/// The bf16 formats round `x` into `rounded` first.
fn project(
    x: &[f32],
    linear_view: &LinearView,
    prepared: Option<&PreparedLinear>,
    out: &mut [f32],
    epilogue: Option<&Epilogue>,
    rounded: &mut Rounded,
) -> Result<()> {
    let Rounded { values, pairs } = rounded;
    match prepared {
        Some(PreparedLinear::Packed(p)) if p.is_bf16() => {
            p.forward(bf16::round_rows(x, p.in_dim(), values), out, epilogue)
        }
        Some(PreparedLinear::Avx512(a)) => a.forward(x, out, epilogue, pairs),
        Some(PreparedLinear::Packed(p)) => p.forward(x, out, epilogue),
        Some(PreparedLinear::Int8(q)) => q.forward(x, out, epilogue),
        Some(PreparedLinear::Bf16Gemm { weight, in_dim }) => {
            let x = bf16::round_rows(x, *in_dim, values);
            gemm_project(x, weight, *in_dim, out, epilogue)
        }
        None => {
            let weight = linear_view.weight.slice()?;
            let out_dim = linear_view.bias.slice::<f32>()?.len().max(1);
            gemm_project(x, weight, weight.len() / out_dim, out, epilogue)
        }
    }
}

/// `out = epilogue(x · wᵀ)` on the `gemm` crate, the epilogue as a pass of its own.
fn gemm_project(
    x: &[f32],
    weight: &[f32],
    in_dim: usize,
    out: &mut [f32],
    epilogue: Option<&Epilogue>,
) -> Result<()> {
    linear(x, weight, in_dim, out)?;
    match epilogue {
        Some(e) => epilogue_pass(out, e),
        None => Ok(()),
    }
}

/// Buffers reused from layer to layer within one forward pass.
#[derive(Default)]
pub struct LayerBuffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
    /// The current linear layer's input rounded to bf16 (bf16 format only).
    rounded: Rounded,
}

/// A linear layer's input rounded to bf16: as f32 values (AVX2 and `gemm` crate paths) or as
/// bf16 pairs (`vdpbf16ps`).
#[derive(Default)]
struct Rounded {
    values: Vec<f32>,
    pairs: Vec<u32>,
}

/// A linear layer's weight and bias as slices.
struct LinearView<'a> {
    weight: View<'a>,
    bias: View<'a>,
}

impl<'a> LinearView<'a> {
    fn new(l: &'a Linear, name: &'static str) -> Result<Self> {
        let bias = l
            .bias()
            .ok_or_else(|| Error::Input(format!("CPU fast path: {name} has no bias")))?;
        Ok(Self {
            weight: View::new(l.weight(), name)?,
            bias: View::new(bias, name)?,
        })
    }
}

/// `hidden [B, L, hidden]` -> (`[B, L, hidden]`, probabilities `[B, H, L, L]` when asked).
pub fn forward(
    p: &LayerParams,
    hidden: &Tensor,
    ctx: &AttentionContext,
    buffers: &mut LayerBuffers,
    want_probs: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (batch, len, width) = hidden.dims3()?;
    let hidden = hidden.contiguous()?;
    let x_view = View::new(&hidden, "hidden states")?;
    let x = x_view.slice()?;
    let dims = Dims {
        batch,
        len,
        heads: p.heads,
        head_size: p.head_size,
    };
    let tokens = batch * len;
    let all = p.heads * p.head_size;

    let qkv = LinearView::new(p.qkv, "attention.self.{query,key,value}_proj")?;
    resize(&mut buffers.qkv, tokens * 3 * all);
    // Q/K/V biases, and K divided by the attention scale, as the candle path does.
    let qkv_epilogue = Epilogue::BiasScale {
        bias: qkv.bias.slice()?,
        scaled: all..2 * all,
        factor: (1.0 / p.scale) as f32,
    };
    project(
        x,
        &qkv,
        p.prepared.map(|q| &q.qkv),
        &mut buffers.qkv,
        Some(&qkv_epilogue),
        &mut buffers.rounded,
    )?;

    let mut probs = want_probs.then(|| vec![0f32; batch * p.heads * len * len]);
    resize(&mut buffers.context, tokens * all);
    {
        let bias_view = View::new(ctx.bias, "attention mask")?;
        let key_view = p
            .pos_key
            .map(|t| View::new(t, "position keys"))
            .transpose()?;
        let query_view = p
            .pos_query
            .map(|t| View::new(t, "position queries"))
            .transpose()?;
        let relative = match (ctx.index, key_view.is_some() || query_view.is_some()) {
            (Some(index), true) => Some(Relative {
                key: key_view.as_ref().map(|v| v.slice()).transpose()?,
                query: query_view.as_ref().map(|v| v.slice()).transpose()?,
                table_rows: table_rows(p.pos_key.or(p.pos_query))?,
                c2p_slot: &index.c2p_slot,
                p2c_slot: &index.p2c_slot,
                first_slot: index.first_slot,
                width: index.width,
            }),
            _ => None,
        };
        attention(
            dims,
            &buffers.qkv,
            bias_view.slice()?,
            &ctx.masked,
            relative.as_ref(),
            &mut buffers.context,
            probs.as_deref_mut(),
        )?;
    }

    let dense = LinearView::new(p.dense, "attention.output.dense")?;
    resize(&mut buffers.attended, tokens * width);
    project(
        &buffers.context,
        &dense,
        p.prepared.map(|q| &q.dense),
        &mut buffers.attended,
        None,
        &mut buffers.rounded,
    )?;
    add_norm(
        &mut buffers.attended,
        dense.bias.slice()?,
        x,
        p.attention_norm,
        "attention.output.LayerNorm",
    )?;

    let inter = LinearView::new(p.intermediate, "intermediate.dense")?;
    let inner_size = inter.bias.slice::<f32>()?.len();
    resize(&mut buffers.inner, tokens * inner_size);
    // Activations the row kernels lack go through candle after the bias.
    let fused_act = if rows::native(p.act) {
        p.act
    } else {
        Activation::Linear
    };
    project(
        &buffers.attended,
        &inter,
        p.prepared.map(|q| &q.intermediate),
        &mut buffers.inner,
        Some(&Epilogue::BiasAct {
            bias: inter.bias.slice()?,
            act: fused_act,
        }),
        &mut buffers.rounded,
    )?;
    if !rows::native(p.act) {
        let t = Tensor::from_slice(&buffers.inner, buffers.inner.len(), &Device::Cpu)?;
        buffers.inner = p.act.forward(&t)?.to_vec1::<f32>()?;
    }

    let output = LinearView::new(p.output, "output.dense")?;
    let mut out = vec![0f32; tokens * width];
    project(
        &buffers.inner,
        &output,
        p.prepared.map(|q| &q.output),
        &mut out,
        None,
        &mut buffers.rounded,
    )?;
    add_norm(
        &mut out,
        output.bias.slice()?,
        &buffers.attended,
        p.output_norm,
        "output.LayerNorm",
    )?;

    let out = Tensor::from_vec(out, (batch, len, width), &Device::Cpu)?;
    let probs = probs
        .map(|v| Tensor::from_vec(v, (batch, p.heads, len, len), &Device::Cpu))
        .transpose()?;
    Ok((out, probs))
}

/// Sizes a reused buffer. Every buffer is fully overwritten by the GEMM that fills it
/// (`read_dst = false`), so old contents need not be cleared.
fn resize(buf: &mut Vec<f32>, len: usize) {
    if buf.len() != len {
        buf.resize(len, 0.0);
    }
}

/// Rows per head (`2S`) of a `[heads, 2S, d]` position table.
fn table_rows(table: Option<&Tensor>) -> Result<usize> {
    Ok(match table {
        Some(t) => t.dims3()?.1,
        None => 0,
    })
}

/// Applies `epilogue` to every row of `out`, as a multi-threaded pass.
fn epilogue_pass(out: &mut [f32], epilogue: &Epilogue) -> Result<()> {
    let width = epilogue.width();
    if !epilogue.fits(width) || width == 0 || !out.len().is_multiple_of(width) {
        return Err(Error::Input(
            "CPU fast path: a bias does not fit its linear layer's output".into(),
        ));
    }
    out.par_chunks_mut(width * ROWS_PER_TASK)
        .for_each(|block| epilogue_rows(block, epilogue));
    Ok(())
}

/// `rows = LayerNorm(rows + bias + residual)`, row by row.
fn add_norm(
    rows_buf: &mut [f32],
    bias: &[f32],
    residual: &[f32],
    norm: &LayerNorm,
    name: &'static str,
) -> Result<()> {
    let gamma_view = View::new(norm.weight(), name)?;
    let gamma = gamma_view.slice()?;
    let beta_view = norm
        .bias()
        .map(|b| View::new(b, name))
        .transpose()?
        .ok_or_else(|| Error::Input(format!("CPU fast path: {name} has no bias")))?;
    let beta = beta_view.slice()?;
    let width = gamma.len();
    if bias.len() != width || beta.len() != width || residual.len() != rows_buf.len() {
        return Err(Error::Input(format!("CPU fast path: {name} sizes")));
    }
    let eps = norm.eps() as f32;
    rows_buf
        .par_chunks_mut(width * ROWS_PER_TASK)
        .zip(residual.par_chunks(width * ROWS_PER_TASK))
        .for_each(|(block, res)| add_norm_rows(block, res, bias, gamma, beta, eps));
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
        rows::add_layer_norm(row, bias, r, gamma, beta, eps);
    }
}
}
