//! `DebertaV2Model`: embeddings and encoder.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L695>
//! (`z_steps` is fixed to 0 there, so the EMD branch never runs and is not ported).

pub mod attention;
pub mod conv;
pub mod embeddings;
pub mod encoder;
mod fused;
pub mod input;
pub mod layer;
pub mod unpadded;

pub use crate::relative_position;

use candle_core::Device;

use crate::config::DebertaV2Config;
use crate::dropout::{DropoutRng, RunMode};
use crate::params::Param;
use crate::plan::ExecutionPlan;
use crate::weights::Weights;
use crate::Result;
pub use deberta_kernels::LinearFormat;
use embeddings::DebertaV2Embeddings;
use encoder::{DebertaV2Encoder, EncoderInput};
pub use input::ModelInput;
pub use unpadded::{PackedOutput, Sequence};

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
    pub last_hidden_state: candle_core::Tensor,
    /// `num_hidden_layers + 1` tensors `[B, L, hidden]`: the embedding output, then each layer.
    pub hidden_states: Option<Vec<candle_core::Tensor>>,
    /// `num_hidden_layers` tensors `[B, heads, L, L]`.
    pub attentions: Option<Vec<candle_core::Tensor>>,
}

/// The DeBERTa-v2/v3 backbone.
pub struct DebertaV2Model {
    embeddings: DebertaV2Embeddings,
    encoder: DebertaV2Encoder,
    config: DebertaV2Config,
    device: Device,
    plan: ExecutionPlan,
    mode: RunMode,
}

impl DebertaV2Model {
    /// Builds the backbone from a weight view positioned at its prefix (`deberta` or the root),
    /// and chooses its execution plan from the device, the load's dtype and kernel options.
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        cfg.validate()?;
        let plan = ExecutionPlan::choose(w.device(), w.dtype(), w.kernel_options())?;
        let model = Self {
            embeddings: DebertaV2Embeddings::load(&w.pp("embeddings"), cfg)?,
            encoder: DebertaV2Encoder::load(&w.pp("encoder"), cfg, w.param_version())?,
            config: cfg.clone(),
            device: w.device().clone(),
            plan,
            mode: RunMode::eval(),
        };
        if plan.linear_format() != LinearFormat::F32 {
            model.encoder.prepare(&plan)?;
        }
        Ok(model)
    }

    /// Quantises the encoder's linear layers to int8: `set_linear_format(LinearFormat::Int8)`.
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.set_linear_format(LinearFormat::Int8)
    }

    /// How the fused CPU path stores and multiplies the encoder's linear layers (Q/K/V,
    /// attention output, intermediate, output); see [`LinearFormat`]. Embeddings, attention
    /// scores, LayerNorms and heads stay f32. Formats other than `F32` need the fused CPU path:
    /// on the candle path (another device, another dtype, or the candle path chosen) they are an
    /// error naming both. The weights are converted now; on error the model is unchanged.
    pub fn set_linear_format(&mut self, format: LinearFormat) -> Result<()> {
        let plan = self.plan.with_linear_format(format, &self.device)?;
        self.encoder.prepare(&plan)?;
        self.plan = plan;
        Ok(())
    }

    /// Training mode: dropout drawn from `rng`, gradients flow to the parameters, the candle
    /// path runs (the fused CPU path has no backward). An error with int8/bf16 linear layers.
    pub fn train(&mut self, rng: DropoutRng) -> Result<()> {
        self.plan = self.plan.with_training(true)?;
        self.mode = RunMode::train(rng);
        Ok(())
    }

    /// Inference mode (the default): dropout off, the load's execution path.
    pub fn eval(&mut self) -> Result<()> {
        self.plan = self.plan.with_training(false)?;
        self.mode = RunMode::eval();
        Ok(())
    }

    /// The execution plan the next forward pass runs.
    pub fn plan(&self) -> &ExecutionPlan {
        &self.plan
    }

    /// Builds the fused CPU path's weights now (packed copies, and in f32 the kernel choice
    /// measured or read from the cache: [`crate::TuneMode`]) instead of at the first forward
    /// pass, so that the first request of a server does not pay for it. Nothing on the candle
    /// path.
    pub fn prepare(&self) -> Result<()> {
        self.encoder.prepare(&self.plan)
    }

    /// The f32 linear-layer kernels the fused path chose by measurement ([`crate::TuneMode`]):
    /// known once its weights are built, at the first f32 forward pass; `None` before, on the
    /// candle path, in bf16 / int8, or with tuning off.
    pub fn kernel_tuning(&self) -> Result<Option<crate::KernelTuning>> {
        self.encoder.kernel_tuning()
    }

    /// The current mode (training or inference).
    pub fn mode(&self) -> &RunMode {
        &self.mode
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
    pub fn word_embeddings(&self) -> &Param {
        self.embeddings.word_embeddings()
    }

    /// Runs the backbone.
    pub fn forward(&self, input: &ModelInput, opts: ForwardOptions) -> Result<BaseModelOutput> {
        let mode = &self.mode;
        let prepared = input::prepare(input, &self.config, &self.device, self.plan.dtype())?;
        let embedding_output = self.embeddings.forward(
            &prepared.input_ids,
            &prepared.token_type_ids,
            &prepared.position_ids,
            &prepared.input_mask,
            mode,
        )?;
        let encoder_input = EncoderInput {
            pair_mask: &prepared.pair_mask,
            input_mask: &prepared.input_mask,
            output_attentions: opts.output_attentions,
        };
        let encoded = self
            .encoder
            .forward(&embedding_output, &encoder_input, &self.plan, mode)?;
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
