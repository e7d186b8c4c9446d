//! One `DebertaV2Layer` on flat buffers: fused QKV GEMM, attention, output GEMM with
//! bias + residual + LayerNorm, intermediate GEMM with bias + activation, output GEMM with
//! bias + residual + LayerNorm, each step on the `deberta-kernels` kernels.
//!
//! Mirrors `DebertaV2Layer.forward`:
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L378>

use candle_core::{Device, Tensor};
use candle_nn::{LayerNorm, Linear};
use deberta_kernels::int8_products::QuantTables;
use deberta_kernels::rows::{self, Act, Epilogue, Norm};
use deberta_kernels::tune::F32Choice;
use deberta_kernels::{linear_f32, AttentionProducts, KernelPlan, LinearScratch, PreparedLinear};

use super::attention::{attend, attend_unpadded};
use super::context::{AttentionContext, UnpaddedContext};
use super::tuning::KernelTuning;
use super::View;
use crate::activation::Activation;
use crate::{Error, Result};

/// The names the fast path gives the four linear layers in its errors.
const QKV: &str = "attention.self.{query,key,value}_proj";
const DENSE: &str = "attention.output.dense";
const INTERMEDIATE: &str = "intermediate.dense";
const OUTPUT: &str = "output.dense";

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
    /// The kernels the model's plan chose (the attention products' kernel among them).
    pub kernels: &'a KernelPlan,
}

impl LayerParams<'_> {
    /// What multiplies the attention products: int8 operands where the linear layers are
    /// int8 ([`PreparedLayer::int8`]), else the plan's f32 kernel.
    pub fn attention_products(&self) -> AttentionProducts {
        self.prepared
            .and_then(|p| p.attention)
            .unwrap_or_else(|| self.kernels.attention_products())
    }
}

/// The four linear layers of a layer in a format the fast path multiplies faster
/// ([`PreparedLinear`]: int8, bf16 or f32 packed for our kernels), with, for f32 under a
/// measured plan, which row counts each packed copy multiplies ([`F32Choice`]).
pub struct PreparedLayer {
    qkv: PreparedSlot,
    dense: PreparedSlot,
    intermediate: PreparedSlot,
    output: PreparedSlot,
    /// The attention products' kernel when it is not the plan's f32 one (int8 layers).
    attention: Option<AttentionProducts>,
    /// The position tables quantised once, for int8 attention products.
    tables: Option<QuantTables>,
}

/// One linear layer's prepared copy (none: the `gemm` crate on the f32 weight) and, under a
/// measured f32 plan, the rows classes the copy multiplies (the others go to the `gemm` crate).
struct PreparedSlot {
    linear: Option<PreparedLinear>,
    choice: Option<F32Choice>,
}

impl PreparedSlot {
    /// The copy that multiplies `rows` rows, or `None` for the `gemm` crate.
    fn for_rows(&self, rows: usize) -> Option<&PreparedLinear> {
        match self.choice {
            Some(choice) if !choice.packed_at(rows) => None,
            _ => self.linear.as_ref(),
        }
    }
}

impl PreparedLayer {
    /// Quantises the four weights (`qkv`, `dense`, `intermediate`, `output`) to int8 for the
    /// plan's int8 kernel, which then multiplies the attention products too
    /// ([`KernelPlan::int8_attention_products`]), with the position tables (`[H, 2S, d]`
    /// position keys and queries, where the layer has them) quantised once here.
    pub fn int8(
        plan: &KernelPlan,
        linears: [&Linear; 4],
        (pos_key, pos_query): (Option<&Tensor>, Option<&Tensor>),
    ) -> Result<Self> {
        let layer = Self::convert(linears, |w, out_dim, in_dim| {
            Ok(PreparedSlot {
                linear: Some(PreparedLinear::int8(plan, w, out_dim, in_dim)?),
                choice: None,
            })
        })?;
        let attention = plan.int8_attention_products();
        let tables = match (attention, pos_key.or(pos_query)) {
            (AttentionProducts::Int8(_), Some(table)) => {
                let dims = table.dims3()?;
                let key = pos_key.map(|t| View::new(t, "position keys")).transpose()?;
                let query = pos_query
                    .map(|t| View::new(t, "position queries"))
                    .transpose()?;
                let key = key.as_ref().map(|v| v.slice()).transpose()?;
                let query = query.as_ref().map(|v| v.slice()).transpose()?;
                let tables = QuantTables::new(key, query, dims).map_err(|error| Error::Kernel {
                    context: "position tables".into(),
                    error,
                })?;
                Some(tables)
            }
            _ => None,
        };
        Ok(Self {
            attention: Some(attention),
            tables,
            ..layer
        })
    }

    /// The position tables quantised for int8 attention products, when they were.
    pub fn quantised_tables(&self) -> Option<&QuantTables> {
        self.tables.as_ref()
    }

    /// Packs the four f32 weights for the kernel the plan picks, or, for a shape `tuning`
    /// measured, for the kernel it chose (no copy where it chose the `gemm` crate at every
    /// row count); `None` where nothing is packed (the `gemm` crate then multiplies the f32
    /// weights as they are).
    pub fn packed_f32(
        plan: &KernelPlan,
        linears: [&Linear; 4],
        tuning: Option<&KernelTuning>,
    ) -> Result<Option<Self>> {
        if !PreparedLinear::packs_f32(plan) {
            return Ok(None);
        }
        Self::convert(linears, |w, out_dim, in_dim| {
            let choice = tuning.and_then(|t| t.choice(out_dim, in_dim));
            let linear = match choice {
                Some(F32Choice { packing, .. }) => packing
                    .map(|k| PreparedLinear::packed_f32_as(plan, k, w, out_dim, in_dim))
                    .transpose()?,
                None => PreparedLinear::packed_f32(plan, w, out_dim, in_dim)?,
            };
            Ok(PreparedSlot { linear, choice })
        })
        .map(Some)
    }

    /// Rounds the four weights to bf16: packed for the kernel the plan picks (bf16 pairs for
    /// `vdpbf16ps`, or bf16 panels for the AVX2 kernel), else kept as f32 for the `gemm`
    /// crate.
    pub fn bf16(plan: &KernelPlan, linears: [&Linear; 4]) -> Result<Self> {
        Self::convert(linears, |w, out_dim, in_dim| {
            Ok(PreparedSlot {
                linear: Some(PreparedLinear::bf16(plan, w, out_dim, in_dim)?),
                choice: None,
            })
        })
    }

    fn convert(
        [qkv, dense, intermediate, output]: [&Linear; 4],
        convert: impl Fn(&[f32], usize, usize) -> deberta_kernels::Result<PreparedSlot>,
    ) -> Result<Self> {
        let one = |l: &Linear, name: &'static str| -> Result<PreparedSlot> {
            let (out_dim, in_dim) = l.weight().dims2()?;
            let w = l.weight().contiguous()?;
            let view = View::new(&w, name)?;
            convert(view.slice()?, out_dim, in_dim).map_err(|error| Error::Kernel {
                context: name.into(),
                error,
            })
        };
        Ok(Self {
            qkv: one(qkv, QKV)?,
            dense: one(dense, DENSE)?,
            intermediate: one(intermediate, INTERMEDIATE)?,
            output: one(output, OUTPUT)?,
            attention: None,
            tables: None,
        })
    }
}

/// Buffers reused from layer to layer within one forward pass.
#[derive(Default)]
pub struct LayerBuffers {
    pub(super) qkv: Vec<f32>,
    pub(super) context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
    /// The current linear layer's input rounded to bf16 (bf16 format only).
    rounded: LinearScratch,
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
    let mut probs = want_probs.then(|| vec![0f32; batch * p.heads * len * len]);
    let out = rows_forward(p, x_view.slice()?, batch * len, buffers, |buffers| {
        attend(p, ctx, (batch, len), buffers, probs.as_deref_mut())
    })?;
    let out = Tensor::from_vec(out, (batch, len, width), &Device::Cpu)?;
    let probs = probs
        .map(|v| Tensor::from_vec(v, (batch, p.heads, len, len), &Device::Cpu))
        .transpose()?;
    Ok((out, probs))
}

/// An unpadded batch: `hidden [T, hidden]` (sequences of `ctx.lens` concatenated row by row)
/// -> `[T, hidden]`. The linear layers run over all `T` rows at once, attention per sequence
/// at its own length.
pub fn forward_unpadded(
    p: &LayerParams,
    hidden: &Tensor,
    ctx: &UnpaddedContext,
    buffers: &mut LayerBuffers,
) -> Result<Tensor> {
    let (tokens, width) = hidden.dims2()?;
    let hidden = hidden.contiguous()?;
    let x_view = View::new(&hidden, "hidden states")?;
    let out = rows_forward(p, x_view.slice()?, tokens, buffers, |buffers| {
        attend_unpadded(p, ctx, buffers)
    })?;
    Ok(Tensor::from_vec(out, (tokens, width), &Device::Cpu)?)
}

/// The layer on `tokens` rows `x [tokens, hidden]`, with `attend` filling `buffers.context`
/// from `buffers.qkv`; returns the output rows.
fn rows_forward(
    p: &LayerParams,
    x: &[f32],
    tokens: usize,
    buffers: &mut LayerBuffers,
    attend: impl FnOnce(&mut LayerBuffers) -> Result<()>,
) -> Result<Vec<f32>> {
    project_qkv(p, x, tokens, buffers)?;
    resize(&mut buffers.context, tokens * p.heads * p.head_size);
    attend(buffers)?;
    attention_output(p, x, buffers)?;
    intermediate(p, tokens, buffers)?;
    output(p, x.len(), buffers)
}

/// `buffers.qkv [tokens, 3*H*d]`: the fused Q/K/V projection of `x` with the Q/K/V biases,
/// and K divided by the attention scale, as the candle path does.
fn project_qkv(
    p: &LayerParams,
    x: &[f32],
    tokens: usize,
    buffers: &mut LayerBuffers,
) -> Result<()> {
    let all = p.heads * p.head_size;
    let qkv = LinearView::new(p.qkv, QKV)?;
    resize(&mut buffers.qkv, tokens * 3 * all);
    let epilogue = Epilogue::BiasScale {
        bias: qkv.bias.slice()?,
        scaled: all..2 * all,
        factor: (1.0 / p.scale) as f32,
    };
    let prepared = p.prepared.map(|q| &q.qkv);
    let (out, scratch) = (&mut buffers.qkv, &mut buffers.rounded);
    project(x, &qkv, prepared, out, Some(&epilogue), scratch)
}

/// `buffers.attended = LayerNorm(context · denseᵀ + bias + x)`.
fn attention_output(p: &LayerParams, x: &[f32], buffers: &mut LayerBuffers) -> Result<()> {
    let dense = LinearView::new(p.dense, DENSE)?;
    resize(&mut buffers.attended, x.len());
    let prepared = p.prepared.map(|q| &q.dense);
    let LayerBuffers {
        context,
        attended,
        rounded,
        ..
    } = buffers;
    project(context, &dense, prepared, attended, None, rounded)?;
    let bias = dense.bias.slice()?;
    add_norm(
        attended,
        bias,
        x,
        p.attention_norm,
        "attention.output.LayerNorm",
    )
}

/// `buffers.inner = act(attended · intermediateᵀ + bias)`: the activation fused into the
/// GEMM where the row kernels have it ([`row_activation`]), else through candle after it.
fn intermediate(p: &LayerParams, tokens: usize, buffers: &mut LayerBuffers) -> Result<()> {
    let inter = LinearView::new(p.intermediate, INTERMEDIATE)?;
    let inner_size = inter.bias.slice::<f32>()?.len();
    resize(&mut buffers.inner, tokens * inner_size);
    let fused = row_activation(p.act);
    let epilogue = Epilogue::BiasAct {
        bias: inter.bias.slice()?,
        act: fused.unwrap_or(Act::Identity),
    };
    let prepared = p.prepared.map(|q| &q.intermediate);
    let LayerBuffers {
        attended,
        inner,
        rounded,
        ..
    } = buffers;
    project(attended, &inter, prepared, inner, Some(&epilogue), rounded)?;
    if fused.is_none() {
        let t = Tensor::from_slice(inner, inner.len(), &Device::Cpu)?;
        *inner = p.act.forward(&t)?.to_vec1::<f32>()?;
    }
    Ok(())
}

/// `LayerNorm(inner · outputᵀ + bias + attended)`, `size` values.
fn output(p: &LayerParams, size: usize, buffers: &mut LayerBuffers) -> Result<Vec<f32>> {
    let output = LinearView::new(p.output, OUTPUT)?;
    let mut out = vec![0f32; size];
    let prepared = p.prepared.map(|q| &q.output);
    let LayerBuffers {
        attended,
        inner,
        rounded,
        ..
    } = buffers;
    project(inner, &output, prepared, &mut out, None, rounded)?;
    let bias = output.bias.slice()?;
    add_norm(&mut out, bias, attended, p.output_norm, "output.LayerNorm")?;
    Ok(out)
}

/// The row kernels' version of `act`, where they compute it (the others go through candle).
fn row_activation(act: Activation) -> Option<Act> {
    match act {
        Activation::Gelu | Activation::GeluPython => Some(Act::GeluErf),
        Activation::GeluNew
        | Activation::GeluPytorchTanh
        | Activation::GeluPythonTanh
        | Activation::GeluFast
        | Activation::GeluAccurate => Some(Act::GeluTanh),
        Activation::Relu => Some(Act::Relu),
        Activation::Linear => Some(Act::Identity),
        _ => None,
    }
}

/// `out = epilogue(x · wᵀ)` through the prepared copy where there is one for this many rows,
/// else the f32 weight through the `gemm` crate.
fn project(
    x: &[f32],
    linear: &LinearView,
    prepared: Option<&PreparedSlot>,
    out: &mut [f32],
    epilogue: Option<&Epilogue>,
    scratch: &mut LinearScratch,
) -> Result<()> {
    let weight = linear.weight.slice()?;
    let out_dim = linear.bias.slice::<f32>()?.len().max(1);
    let in_dim = weight.len() / out_dim;
    match prepared.and_then(|slot| slot.for_rows(x.len() / in_dim.max(1))) {
        Some(prepared) => prepared.forward(x, out, epilogue, scratch)?,
        None => linear_f32(x, weight, in_dim, out, epilogue)?,
    }
    Ok(())
}

/// Sizes a reused buffer. Every buffer is fully overwritten by the GEMM that fills it
/// (`read_dst = false`), so old contents need not be cleared.
fn resize(buf: &mut Vec<f32>, len: usize) {
    if buf.len() != len {
        buf.resize(len, 0.0);
    }
}

/// `rows = LayerNorm(rows + bias + residual)` with `norm`'s weight, bias and epsilon.
fn add_norm(
    rows_buf: &mut [f32],
    bias: &[f32],
    residual: &[f32],
    norm: &LayerNorm,
    name: &'static str,
) -> Result<()> {
    let gamma_view = View::new(norm.weight(), name)?;
    let beta_view = norm
        .bias()
        .map(|b| View::new(b, name))
        .transpose()?
        .ok_or_else(|| Error::Input(format!("CPU fast path: {name} has no bias")))?;
    let norm = Norm {
        gamma: gamma_view.slice()?,
        beta: beta_view.slice()?,
        eps: norm.eps() as f32,
    };
    rows::add_norm(rows_buf, bias, residual, norm).map_err(|error| Error::Kernel {
        context: name.into(),
        error,
    })
}
