//! `DebertaV2Layer`: attention, then the feed-forward block (`DebertaV2Intermediate` and
//! `DebertaV2Output`), post-LayerNorm.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L378>

use std::sync::OnceLock;

use candle_core::Tensor;
use candle_nn::{LayerNorm, Linear};

use crate::activation::Activation;
use crate::config::DebertaV2Config;
use crate::cpu::{self, LayerBuffers, LayerParams, PreparedLayer};
use crate::model::attention::{AttentionContext, DebertaV2Attention};
use crate::model::LinearFormat;
use crate::nn::{apply, layer_norm, linear};
use crate::weights::Weights;
use crate::Result;

pub struct DebertaV2Layer {
    attention: DebertaV2Attention,
    intermediate: Linear,
    act: Activation,
    output: Linear,
    output_norm: LayerNorm,
    /// The linear layers in the CPU fast path's own formats: int8 or bf16 once
    /// [`Self::install_linear_format`] put them in, else packed f32 built on the fast path's first use (`None`
    /// where this CPU has no kernel for them).
    prepared: OnceLock<Option<PreparedLayer>>,
}

impl DebertaV2Layer {
    pub fn load(
        w: &Weights,
        cfg: &DebertaV2Config,
        rel_embeddings: Option<&Tensor>,
    ) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            attention: DebertaV2Attention::load(&w.pp("attention"), cfg, rel_embeddings)?,
            intermediate: linear(&w.pp("intermediate.dense"), h, i, true)?,
            act: cfg.hidden_act,
            output: linear(&w.pp("output.dense"), i, h, true)?,
            output_norm: layer_norm(&w.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
            prepared: OnceLock::new(),
        })
    }

    /// `[B, L, hidden]` -> (`[B, L, hidden]`, attention probabilities `[B, heads, L, L]` when
    /// `want_probs`). On CPU f32 this runs the fused fast path ([`crate::cpu`]).
    pub fn forward(
        &self,
        hidden: &Tensor,
        ctx: &AttentionContext,
        want_probs: bool,
        buffers: &mut LayerBuffers,
    ) -> Result<(Tensor, Option<Tensor>)> {
        if cpu::supports(hidden) {
            return cpu::layer_forward(&self.fast_params()?, hidden, ctx, buffers, want_probs);
        }
        let (attended, probs) = self.attention.forward(hidden, ctx)?;
        let inner = self.act.forward(&apply(&self.intermediate, &attended)?)?;
        let out = (apply(&self.output, &inner)? + &attended)?;
        // [H, B, L, L] -> [B, H, L, L]
        let probs = want_probs
            .then(|| probs.transpose(0, 1)?.contiguous())
            .transpose()?;
        Ok((apply(&self.output_norm, &out)?, probs))
    }

    /// The four linear layers' copies in `format` (int8 or bf16; `None` for `F32`, which
    /// packs f32 copies on first use). [`Self::install_linear_format`] puts them in use.
    pub fn build_linear_format(&self, format: LinearFormat) -> Result<Option<PreparedLayer>> {
        let (self_attention, dense, _) = self.attention.parts();
        let (qkv, ..) = self_attention.parts();
        let linears = [qkv, dense, &self.intermediate, &self.output];
        let plan = cpu::plan_from_env();
        Ok(match format {
            LinearFormat::F32 => None,
            LinearFormat::Bf16 => Some(PreparedLayer::bf16(&plan, linears)?),
            LinearFormat::Int8 => Some(PreparedLayer::int8(&plan, linears)?),
        })
    }

    /// Makes the CPU fast path use `prepared` from now on (`None`: packed f32 on first use).
    pub fn install_linear_format(&mut self, prepared: Option<PreparedLayer>) {
        self.prepared = match prepared {
            Some(p) => OnceLock::from(Some(p)),
            None => OnceLock::new(),
        };
    }

    fn fast_params(&self) -> Result<LayerParams<'_>> {
        let (self_attention, dense, attention_norm) = self.attention.parts();
        let (qkv, pos_key, pos_query, heads, head_size, scale) = self_attention.parts();
        let prepared = self.prepared(qkv, dense)?;
        Ok(LayerParams {
            qkv,
            pos_key,
            pos_query,
            heads,
            head_size,
            scale,
            dense,
            attention_norm,
            intermediate: &self.intermediate,
            act: self.act,
            output: &self.output,
            output_norm: &self.output_norm,
            prepared,
        })
    }

    /// The prepared weights: the int8 or bf16 ones if installed, else the f32 ones, packed on
    /// the first call.
    fn prepared(&self, qkv: &Linear, dense: &Linear) -> Result<Option<&PreparedLayer>> {
        if let Some(prepared) = self.prepared.get() {
            return Ok(prepared.as_ref());
        }
        let linears = [qkv, dense, &self.intermediate, &self.output];
        let packed = PreparedLayer::packed_f32(&cpu::plan_from_env(), linears)?;
        // Another thread may have packed first; either copy is the same.
        Ok(self.prepared.get_or_init(|| packed).as_ref())
    }
}
