//! `DebertaV2Encoder`: the relative embedding table (optionally layer-normalised), the stack of
//! layers, and the nGiE convolution after the first layer.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L559>

use candle_core::{Device, Tensor};

use crate::config::DebertaV2Config;
use crate::cpu::LayerBuffers;
use crate::model::attention::AttentionContext;
use crate::model::conv::ConvLayer;
use crate::model::layer::DebertaV2Layer;
use crate::model::relative_position::RelativeIndex;
use crate::model::LinearFormat;
use crate::nn::{apply, layer_norm, layer_norm_or_init};
use crate::weights::Weights;
use crate::Result;

/// What the encoder returns: every layer's output and, when asked, its attention probabilities.
pub struct EncoderOutput {
    /// Layer outputs `[B, L, H]`, one per layer (the embedding output is not included).
    pub layers: Vec<Tensor>,
    /// Attention probabilities `[B, heads, L, L]`, one per layer, when requested.
    pub attentions: Option<Vec<Tensor>>,
}

pub struct DebertaV2Encoder {
    layers: Vec<DebertaV2Layer>,
    conv: Option<ConvLayer>,
    relative: Option<RelativeSettings>,
}

/// How relative positions are bucketed and indexed.
#[derive(Clone, Copy)]
struct RelativeSettings {
    span: usize,
    buckets: i64,
    max_relative_positions: i64,
}

impl DebertaV2Encoder {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let rel_embeddings = if cfg.relative_attention {
            Some(load_rel_embeddings(w, cfg)?)
        } else {
            if cfg.norm_rel_layer_norm() {
                // transformers defines encoder.LayerNorm for norm_rel_ebd "layer_norm" even
                // without relative attention; never read, but held so a conversion writes it.
                layer_norm_or_init(&w.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?;
            }
            None
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                DebertaV2Layer::load(&w.pp(&format!("layer.{i}")), cfg, rel_embeddings.as_ref())
            })
            .collect::<Result<Vec<_>>>()?;
        let conv = if cfg.conv_kernel_size > 0 {
            Some(ConvLayer::load(&w.pp("conv"), cfg)?)
        } else {
            None
        };
        let relative = cfg.relative_attention.then(|| RelativeSettings {
            span: cfg.position_span(),
            buckets: cfg.position_buckets,
            max_relative_positions: cfg.max_relative_positions() as i64,
        });
        Ok(Self {
            layers,
            conv,
            relative,
        })
    }

    /// Every layer's linear layers in `format` (see `DebertaV2Model::set_linear_format`): all
    /// converted first, then installed, so an error leaves the model as it was.
    pub fn set_linear_format(&mut self, format: LinearFormat) -> Result<()> {
        let built = self
            .layers
            .iter()
            .map(|layer| layer.build_linear_format(format))
            .collect::<Result<Vec<_>>>()?;
        for (layer, prepared) in self.layers.iter_mut().zip(built) {
            layer.install_linear_format(prepared);
        }
        Ok(())
    }

    /// `embeddings`: `[B, L, H]`; `pair_mask`: `[B, 1, L, L]` u8; `input_mask`: `[B, L]` f32.
    pub fn forward(
        &self,
        embeddings: &Tensor,
        pair_mask: &Tensor,
        input_mask: &Tensor,
        output_attentions: bool,
    ) -> Result<EncoderOutput> {
        let len = embeddings.dim(1)?;
        let index = self
            .relative
            .map(|r| relative_index(r, len, embeddings.device()))
            .transpose()?;
        let bias = additive_bias(pair_mask)?;
        let ctx = AttentionContext::new(&bias, index.as_ref())?;
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut attentions = output_attentions.then(Vec::new);
        let mut hidden = embeddings.clone();
        let mut buffers = LayerBuffers::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let (mut out, probs) = layer.forward(&hidden, &ctx, output_attentions, &mut buffers)?;
            if let (Some(all), Some(probs)) = (attentions.as_mut(), probs) {
                all.push(probs);
            }
            if let (0, Some(conv)) = (i, &self.conv) {
                out = conv.forward(embeddings, &out, input_mask)?;
            }
            layers.push(out.clone());
            hidden = out;
        }
        Ok(EncoderOutput { layers, attentions })
    }
}

/// `[B, 1, L, L]` u8 mask -> `[1, B, L, L]` f32 bias: 0 where allowed, `f32::MIN` elsewhere.
fn additive_bias(pair_mask: &Tensor) -> Result<Tensor> {
    let (b, _, l, _) = pair_mask.dims4()?;
    let mask = pair_mask.reshape((1, b, l, l))?;
    let zeros = Tensor::zeros((1, b, l, l), candle_core::DType::F32, pair_mask.device())?;
    let min = Tensor::full(f32::MIN, (1, b, l, l), pair_mask.device())?;
    Ok(mask.where_cond(&zeros, &min)?)
}

fn relative_index(r: RelativeSettings, len: usize, device: &Device) -> Result<RelativeIndex> {
    RelativeIndex::new(len, r.span, r.buckets, r.max_relative_positions, device)
}

/// `rel_embeddings.weight [2S, H]`, layer-normalised when `norm_rel_ebd` says so.
fn load_rel_embeddings(w: &Weights, cfg: &DebertaV2Config) -> Result<Tensor> {
    let table = w
        .pp("rel_embeddings")
        .get(&[2 * cfg.position_span(), cfg.hidden_size], "weight")?;
    if cfg.norm_rel_layer_norm() {
        let norm = layer_norm(&w.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?;
        apply(&norm, &table)
    } else {
        Ok(table)
    }
}
