//! The fused CPU path's view of the encoder: per-layer weights derived from the parameters
//! (Q/K/V stacked into one projection, the position projections of the normalised relative
//! embeddings folded per layer, and the linear layers in the plan's format: packed f32, bf16
//! or int8). Inference only; built from the detached values and rebuilt whenever the
//! parameters' version moves or the linear format changes.

use candle_core::Tensor;

use crate::activation::Activation;
use crate::cpu::{tune_f32, KernelTuning, LayerParams, PreparedLayer, TuneMode};
use crate::dropout::RunMode;
use crate::model::layer::DebertaV2Layer;
use crate::model::LinearFormat;
use crate::nn::Linear;
use crate::plan::KernelPlan;
use crate::Result;

/// One layer's weights as the fused path reads them.
pub(crate) struct FusedLayer {
    /// `[3 * heads * d, hidden]`: query, key and value projections stacked.
    qkv: candle_nn::Linear,
    /// `Kr / scale` (c2p) and `Qr` (p2c), `[heads, 2S, d]`.
    pos_key: Option<Tensor>,
    pos_query: Option<Tensor>,
    heads: usize,
    head_size: usize,
    scale: f64,
    dense: candle_nn::Linear,
    attention_norm: candle_nn::LayerNorm,
    intermediate: candle_nn::Linear,
    act: Activation,
    output: candle_nn::Linear,
    output_norm: candle_nn::LayerNorm,
    /// The four linear layers in the plan's format (`None`: f32 through the `gemm` crate).
    prepared: Option<PreparedLayer>,
    kernels: KernelPlan,
}

/// Every layer's fused weights, for one parameter version and linear format.
pub(crate) struct FusedEncoder {
    pub layers: Vec<FusedLayer>,
    /// The f32 kernels chosen by measurement, where they were ([`TuneMode`]).
    pub tuning: Option<KernelTuning>,
}

impl FusedEncoder {
    /// Derives every layer's weights; `rel` is the normalised relative table `[2S, hidden]`.
    /// In f32, the kernels of the layers' weight shapes are measured first (per `tune`).
    pub fn build(
        layers: &[DebertaV2Layer],
        rel: Option<&Tensor>,
        format: LinearFormat,
        (kernels, tune): (&KernelPlan, TuneMode),
    ) -> Result<Self> {
        let mut layers = layers
            .iter()
            .map(|layer| FusedLayer::derive(layer, rel, kernels))
            .collect::<Result<Vec<_>>>()?;
        let tuning = match format {
            LinearFormat::F32 => {
                let shapes = layers
                    .iter()
                    .flat_map(FusedLayer::linears)
                    .map(|l| l.weight().dims2())
                    .collect::<candle_core::Result<Vec<_>>>()?;
                tune_f32(kernels, &shapes, tune)?
            }
            LinearFormat::Bf16 | LinearFormat::Int8 => None,
        };
        for layer in &mut layers {
            layer.prepare(format, tuning.as_ref())?;
        }
        Ok(Self { layers, tuning })
    }
}

impl FusedLayer {
    /// The layer's fused weights, its linear layers not yet prepared ([`Self::prepare`]).
    fn derive(layer: &DebertaV2Layer, rel: Option<&Tensor>, kernels: &KernelPlan) -> Result<Self> {
        let parts = layer.parts();
        let attention = parts.attention.parts();
        let self_attention = attention.self_attention;
        let sa = self_attention.parts();
        let positions = rel
            .map(|rel| self_attention.project_positions(rel, &RunMode::eval()))
            .transpose()?;
        let (pos_key, pos_query) = match positions {
            Some(p) => (p.key, p.query),
            None => (None, None),
        };
        Ok(Self {
            qkv: stack(&[sa.query, sa.key, sa.value])?,
            pos_key,
            pos_query,
            heads: sa.heads,
            head_size: sa.head_size,
            scale: sa.scale,
            dense: attention.dense.to_candle(),
            attention_norm: attention.layer_norm.to_candle(),
            intermediate: parts.intermediate.to_candle(),
            act: parts.act,
            output: parts.output.to_candle(),
            output_norm: parts.output_norm.to_candle(),
            prepared: None,
            kernels: *kernels,
        })
    }

    /// The four linear layers, in the order [`PreparedLayer`] takes them.
    fn linears(&self) -> [&candle_nn::Linear; 4] {
        [&self.qkv, &self.dense, &self.intermediate, &self.output]
    }

    /// Prepares the linear layers in `format` (f32: packed per the plan, or per `tuning`).
    fn prepare(&mut self, format: LinearFormat, tuning: Option<&KernelTuning>) -> Result<()> {
        let (kernels, linears) = (&self.kernels, self.linears());
        let prepared = match format {
            LinearFormat::F32 => PreparedLayer::packed_f32(kernels, linears, tuning)?,
            LinearFormat::Bf16 => Some(PreparedLayer::bf16(kernels, linears)?),
            LinearFormat::Int8 => {
                let tables = (self.pos_key.as_ref(), self.pos_query.as_ref());
                Some(PreparedLayer::int8(kernels, linears, tables)?)
            }
        };
        self.prepared = prepared;
        Ok(())
    }

    /// The borrowed view `cpu::layer_forward` runs.
    pub fn params(&self) -> LayerParams<'_> {
        LayerParams {
            qkv: &self.qkv,
            pos_key: self.pos_key.as_ref(),
            pos_query: self.pos_query.as_ref(),
            heads: self.heads,
            head_size: self.head_size,
            scale: self.scale,
            dense: &self.dense,
            attention_norm: &self.attention_norm,
            intermediate: &self.intermediate,
            act: self.act,
            output: &self.output,
            output_norm: &self.output_norm,
            prepared: self.prepared.as_ref(),
            kernels: &self.kernels,
        }
    }
}

/// Stacks linear layers along their outputs (detached values): one GEMM instead of several.
fn stack(parts: &[&Linear]) -> Result<candle_nn::Linear> {
    let weights: Vec<&Tensor> = parts.iter().map(|p| p.weight().value()).collect();
    let biases = parts
        .iter()
        .map(|p| p.bias().map(|b| b.value().clone()))
        .collect::<Option<Vec<Tensor>>>();
    let bias = biases.map(|b| Tensor::cat(&b, 0)).transpose()?;
    Ok(candle_nn::Linear::new(Tensor::cat(&weights, 0)?, bias))
}
