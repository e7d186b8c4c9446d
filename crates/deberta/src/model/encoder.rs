//! `DebertaV2Encoder`: the relative embedding table (optionally layer-normalised), the stack of
//! layers, and the nGiE convolution after the first layer. The forward pass runs on the backend
//! the model's [`ExecutionPlan`] chose: candle ops, or the fused CPU path.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L559>

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::config::DebertaV2Config;
use crate::cpu::{self, KernelTuning, LayerBuffers};
use crate::dropout::RunMode;
use crate::model::attention::AttentionContext;
use crate::model::conv::ConvLayer;
use crate::model::fused::FusedEncoder;
use crate::model::layer::DebertaV2Layer;
use crate::nn::{layer_norm, layer_norm_or_init, LayerNorm};
use crate::params::{Derived, Param, ParamVersion};
use crate::plan::{Backend, ExecutionPlan, KernelPlan};
use crate::relative_position::{RelativeIndex, RelativeSlots};
use crate::weights::Weights;
use crate::Result;

/// What the encoder returns: every layer's output and, when asked, its attention probabilities.
pub struct EncoderOutput {
    /// Layer outputs `[B, L, H]`, one per layer (the embedding output is not included).
    pub layers: Vec<Tensor>,
    /// Attention probabilities `[B, heads, L, L]`, one per layer, when requested.
    pub attentions: Option<Vec<Tensor>>,
}

/// The encoder's inputs besides the embeddings.
pub struct EncoderInput<'a> {
    /// `[B, 1, L, L]` u8: 1 where query i may attend to key j.
    pub pair_mask: &'a Tensor,
    /// `[B, L]` in the compute dtype.
    pub input_mask: &'a Tensor,
    pub output_attentions: bool,
}

pub struct DebertaV2Encoder {
    layers: Vec<DebertaV2Layer>,
    conv: Option<ConvLayer>,
    relative: Option<Relative>,
    /// The fused path's derived weights, for the parameters' current version.
    fused: Derived<FusedEncoder>,
    version: ParamVersion,
}

/// The relative embedding table and how positions are bucketed.
struct Relative {
    table: Param,
    norm: Option<LayerNorm>,
    span: usize,
    buckets: i64,
    max_relative_positions: i64,
}

impl Relative {
    /// `rel_embeddings.weight [2S, H]`, layer-normalised when `norm_rel_ebd` says so.
    fn embeddings(&self, mode: &RunMode) -> Result<Tensor> {
        let table = self.table.get(mode.is_train());
        match &self.norm {
            Some(norm) => norm.forward(table, mode),
            None => Ok(table.clone()),
        }
    }

    fn slots(&self, len: usize) -> RelativeSlots {
        RelativeSlots::new(len, self.span, self.buckets, self.max_relative_positions)
    }
}

impl DebertaV2Encoder {
    pub fn load(w: &Weights, cfg: &DebertaV2Config, version: ParamVersion) -> Result<Self> {
        let relative = if cfg.relative_attention {
            Some(Relative {
                table: w
                    .pp("rel_embeddings")
                    .get(&[2 * cfg.position_span(), cfg.hidden_size], "weight")?,
                norm: cfg
                    .norm_rel_layer_norm()
                    .then(|| layer_norm(&w.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps))
                    .transpose()?,
                span: cfg.position_span(),
                buckets: cfg.position_buckets,
                max_relative_positions: cfg.max_relative_positions() as i64,
            })
        } else {
            if cfg.norm_rel_layer_norm() {
                // transformers defines encoder.LayerNorm for norm_rel_ebd "layer_norm" even
                // without relative attention; never read, but held so a conversion writes it.
                layer_norm_or_init(&w.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?;
            }
            None
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DebertaV2Layer::load(&w.pp(&format!("layer.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let conv = if cfg.conv_kernel_size > 0 {
            Some(ConvLayer::load(&w.pp("conv"), cfg)?)
        } else {
            None
        };
        Ok(Self {
            layers,
            conv,
            relative,
            fused: Derived::default(),
            version,
        })
    }

    /// Builds the fused path's weights for `plan` now (so a format that cannot be prepared is
    /// an error when it is set, not at the next forward), or drops them on the candle path.
    pub fn prepare(&self, plan: &ExecutionPlan) -> Result<()> {
        match plan.backend() {
            Backend::CpuFused(kernels) => {
                let built = self.build_fused(plan, &kernels)?;
                self.fused.install(self.version.get(), built)
            }
            Backend::Candle => self.fused.clear(),
        }
    }

    fn build_fused(&self, plan: &ExecutionPlan, kernels: &KernelPlan) -> Result<FusedEncoder> {
        let rel = self
            .relative
            .as_ref()
            .map(|r| r.embeddings(&RunMode::eval()))
            .transpose()?;
        let kernels = (kernels, plan.tune_mode());
        FusedEncoder::build(&self.layers, rel.as_ref(), plan.linear_format(), kernels)
    }

    /// The f32 kernels the fused path chose by measurement, once its weights are built (after
    /// the first forward pass in f32); `None` before, on the candle path, or untuned.
    pub fn kernel_tuning(&self) -> Result<Option<KernelTuning>> {
        Ok(self.fused.peek()?.and_then(|f| f.tuning.clone()))
    }

    /// Runs the layers on `plan`'s backend. `embeddings`: `[B, L, H]`.
    pub fn forward(
        &self,
        embeddings: &Tensor,
        input: &EncoderInput,
        plan: &ExecutionPlan,
        mode: &RunMode,
    ) -> Result<EncoderOutput> {
        let bias = additive_bias(input.pair_mask, embeddings.dtype())?;
        let mut out = EncoderOutput {
            layers: Vec::with_capacity(self.layers.len()),
            attentions: input.output_attentions.then(Vec::new),
        };
        match plan.backend() {
            Backend::Candle => self.forward_candle(embeddings, input, &bias, mode, &mut out)?,
            Backend::CpuFused(kernels) => {
                self.forward_fused(embeddings, input, &bias, (plan, &kernels), &mut out)?
            }
        }
        Ok(out)
    }

    fn forward_candle(
        &self,
        embeddings: &Tensor,
        input: &EncoderInput,
        bias: &Tensor,
        mode: &RunMode,
        out: &mut EncoderOutput,
    ) -> Result<()> {
        let len = embeddings.dim(1)?;
        let (index, rel) = match &self.relative {
            Some(r) => (
                Some(RelativeIndex::new(&r.slots(len), len, embeddings.device())?),
                Some(r.embeddings(mode)?),
            ),
            None => (None, None),
        };
        let (b, _, l, _) = input.pair_mask.dims4()?;
        let keep = input.pair_mask.reshape((1, b, l, l))?; // [B, 1, L, L] -> [1, B, L, L]
        let ctx = AttentionContext {
            bias,
            keep: &keep,
            index: index.as_ref(),
            rel_embeddings: rel.as_ref(),
        };
        let mut hidden = embeddings.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let (layer_out, probs) = layer.forward(&hidden, &ctx, input.output_attentions, mode)?;
            hidden = self.after_layer(i, embeddings, layer_out, probs, input, mode, out)?;
        }
        Ok(())
    }

    fn forward_fused(
        &self,
        embeddings: &Tensor,
        input: &EncoderInput,
        bias: &Tensor,
        (plan, kernels): (&ExecutionPlan, &KernelPlan),
        out: &mut EncoderOutput,
    ) -> Result<()> {
        let fused = self
            .fused
            .get_or_build(self.version.get(), || self.build_fused(plan, kernels))?;
        let len = embeddings.dim(1)?;
        let slots = self.relative.as_ref().map(|r| r.slots(len));
        let ctx = cpu::AttentionContext {
            bias,
            index: slots.as_ref(),
            masked: masked_sequences(input.pair_mask)?,
        };
        let mut hidden = embeddings.clone();
        let mut buffers = LayerBuffers::default();
        let eval = RunMode::eval();
        for (i, layer) in fused.layers.iter().enumerate() {
            let (layer_out, probs) = cpu::layer_forward(
                &layer.params(),
                &hidden,
                &ctx,
                &mut buffers,
                input.output_attentions,
            )?;
            hidden = self.after_layer(i, embeddings, layer_out, probs, input, &eval, out)?;
        }
        Ok(())
    }

    /// An unpadded batch on the fused CPU path: `embeddings [T, H]` holds sequences of `lens`
    /// concatenated row by row; returns the last layer's output `[T, H]`. The linear layers
    /// run over all `T` rows, attention and the conv layer per sequence at its own length.
    /// An error on the candle path (the caller pads there).
    pub fn forward_unpadded(
        &self,
        embeddings: &Tensor,
        lens: &[usize],
        plan: &ExecutionPlan,
    ) -> Result<Tensor> {
        let Backend::CpuFused(kernels) = plan.backend() else {
            return Err(crate::Error::internal(
                "unpadded batches run on the fused CPU path only",
            ));
        };
        let fused = self
            .fused
            .get_or_build(self.version.get(), || self.build_fused(plan, &kernels))?;
        // One slot table per distinct length, shared by its sequences.
        let tables: BTreeMap<usize, RelativeSlots> = match &self.relative {
            Some(r) => lens.iter().map(|&len| (len, r.slots(len))).collect(),
            None => BTreeMap::new(),
        };
        let ctx = cpu::UnpaddedContext {
            lens,
            slots: lens.iter().map(|len| tables.get(len)).collect(),
        };
        let mut hidden = embeddings.clone();
        let mut buffers = LayerBuffers::default();
        for (i, layer) in fused.layers.iter().enumerate() {
            let out = cpu::layer_forward_unpadded(&layer.params(), &hidden, &ctx, &mut buffers)?;
            hidden = match (i, &self.conv) {
                (0, Some(conv)) => conv_unpadded(conv, embeddings, &out, lens)?,
                _ => out,
            };
        }
        Ok(hidden)
    }

    /// Records a layer's output (after the conv layer for the first one) and returns it.
    #[allow(clippy::too_many_arguments)]
    fn after_layer(
        &self,
        i: usize,
        embeddings: &Tensor,
        mut layer_out: Tensor,
        probs: Option<Tensor>,
        input: &EncoderInput,
        mode: &RunMode,
        out: &mut EncoderOutput,
    ) -> Result<Tensor> {
        if let (Some(all), Some(probs)) = (out.attentions.as_mut(), probs) {
            all.push(probs);
        }
        if let (0, Some(conv)) = (i, &self.conv) {
            layer_out = conv.forward(embeddings, &layer_out, input.input_mask, mode)?;
        }
        out.layers.push(layer_out.clone());
        Ok(layer_out)
    }
}

/// The conv layer after the first layer of an unpadded batch, per sequence (its convolution
/// must not reach into the neighbouring sequences): `embeddings`, `layer_out` `[T, H]` ->
/// `[T, H]`.
fn conv_unpadded(
    conv: &ConvLayer,
    embeddings: &Tensor,
    layer_out: &Tensor,
    lens: &[usize],
) -> Result<Tensor> {
    let eval = RunMode::eval();
    let mut parts = Vec::with_capacity(lens.len());
    let mut row = 0;
    for &len in lens {
        // [T, H] -> [1, len, H]
        let e = embeddings.narrow(0, row, len)?.unsqueeze(0)?;
        let r = layer_out.narrow(0, row, len)?.unsqueeze(0)?;
        let mask = Tensor::ones((1, len), embeddings.dtype(), embeddings.device())?;
        parts.push(conv.forward(&e, &r, &mask, &eval)?.squeeze(0)?);
        row += len;
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// `[B, 1, L, L]` u8 mask -> `[1, B, L, L]` bias in `dtype`: 0 where allowed, the dtype's
/// minimum elsewhere (transformers' `masked_fill(finfo(dtype).min)`).
fn additive_bias(pair_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, _, l, _) = pair_mask.dims4()?;
    let mask = pair_mask.reshape((1, b, l, l))?;
    let device = pair_mask.device();
    let zeros = Tensor::zeros((1, b, l, l), dtype, device)?;
    let min = Tensor::full(dtype_min(dtype), (1, b, l, l), device)?.to_dtype(dtype)?;
    Ok(mask.where_cond(&zeros, &min)?)
}

/// The most negative finite value of `dtype`, as f64.
fn dtype_min(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => half::f16::MIN.to_f64(),
        DType::BF16 => half::bf16::MIN.to_f64(),
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// Per sequence, whether its `[L, L]` block of the pair mask masks anything (host copy: the
/// fused path is CPU only).
fn masked_sequences(pair_mask: &Tensor) -> Result<Vec<bool>> {
    // [B, 1, L, L] -> [B]: 1 where any entry is 0.
    let any_masked = pair_mask
        .eq(0u8)?
        .flatten_from(1)?
        .max(candle_core::D::Minus1)?
        .to_vec1::<u8>()?;
    Ok(any_masked.into_iter().map(|m| m != 0).collect())
}
