//! `DebertaV2Model`: embeddings and encoder.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L695>
//! (`z_steps` is fixed to 0 there, so the EMD branch never runs and is not ported).

pub mod attention;
pub mod conv;
pub mod embeddings;
pub mod encoder;
pub mod input;
pub mod layer;
pub mod relative_position;

use candle_core::{Device, Tensor};

use crate::config::DebertaV2Config;
use crate::weights::Weights;
use crate::Result;
pub use deberta_kernels::LinearFormat;
use embeddings::DebertaV2Embeddings;
use encoder::DebertaV2Encoder;
pub use input::ModelInput;

/// Which optional outputs a forward pass returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// Return the embedding output and every layer's output.
    pub output_hidden_states: bool,
    /// Return every layer's attention probabilities.
    pub output_attentions: bool,
}

/// transformers' `BaseModelOutput`.
#[derive(Debug, Clone)]
pub struct BaseModelOutput {
    /// `[B, L, hidden]`: the last layer's output.
    pub last_hidden_state: Tensor,
    /// `num_hidden_layers + 1` tensors `[B, L, hidden]`: the embedding output, then each layer.
    pub hidden_states: Option<Vec<Tensor>>,
    /// `num_hidden_layers` tensors `[B, heads, L, L]`.
    pub attentions: Option<Vec<Tensor>>,
}

/// The DeBERTa-v2/v3 backbone.
pub struct DebertaV2Model {
    embeddings: DebertaV2Embeddings,
    encoder: DebertaV2Encoder,
    config: DebertaV2Config,
    device: Device,
}

impl DebertaV2Model {
    /// Builds the backbone from a weight view positioned at its prefix (`deberta` or the root).
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            embeddings: DebertaV2Embeddings::load(&w.pp("embeddings"), cfg)?,
            encoder: DebertaV2Encoder::load(&w.pp("encoder"), cfg)?,
            config: cfg.clone(),
            device: w.device().clone(),
        })
    }

    /// Quantises the encoder's linear layers to int8: `set_linear_format(LinearFormat::Int8)`.
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.set_linear_format(LinearFormat::Int8)
    }

    /// How the CPU fast path stores and multiplies the encoder's linear layers (Q/K/V,
    /// attention output, intermediate, output); see [`LinearFormat`]. Embeddings, attention
    /// scores, LayerNorms and heads stay f32. Other than `F32`, CPU only: an error on other
    /// devices. The formats are the CPU fast path's: with it off (`DEBERTA_CPU_FAST=0`) the
    /// candle path runs the f32 weights whatever the format.
    pub fn set_linear_format(&mut self, format: LinearFormat) -> Result<()> {
        if format != LinearFormat::F32 && !self.device.is_cpu() {
            return Err(crate::Error::Input(format!(
                "the {format} linear-layer format runs on the CPU only"
            )));
        }
        self.encoder.set_linear_format(format)
    }

    /// The config the model was built from.
    pub fn config(&self) -> &DebertaV2Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The word embedding matrix `[vocab, embedding_size]`.
    pub fn word_embeddings(&self) -> &Tensor {
        self.embeddings.word_embeddings()
    }

    /// Runs the backbone.
    pub fn forward(&self, input: &ModelInput, opts: ForwardOptions) -> Result<BaseModelOutput> {
        let prepared = input::prepare(input, &self.config, &self.device)?;
        let embedding_output = self.embeddings.forward(
            &prepared.input_ids,
            &prepared.token_type_ids,
            &prepared.position_ids,
            &prepared.input_mask,
        )?;
        let encoded = self.encoder.forward(
            &embedding_output,
            &prepared.pair_mask,
            &prepared.input_mask,
            opts.output_attentions,
        )?;
        let last_hidden_state = match encoded.layers.last() {
            Some(t) => t.clone(),
            None => embedding_output.clone(),
        };
        let hidden_states = opts.output_hidden_states.then(|| {
            std::iter::once(embedding_output)
                .chain(encoded.layers)
                .collect()
        });
        Ok(BaseModelOutput {
            last_hidden_state,
            hidden_states,
            attentions: encoded.attentions,
        })
    }
}
