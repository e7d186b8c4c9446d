//! `DisentangledSelfAttention` and `DebertaV2SelfOutput`: content-to-content attention plus the
//! content-to-position (c2p) and position-to-content (p2c) terms over relative embeddings.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L131>
//!
//! The position projections (`key_proj`/`query_proj`, or `pos_key_proj`/`pos_query_proj`, applied
//! to the normalised relative embeddings) depend only on the weights, so they are computed once
//! at load. The gathers are flat `index_select`s over `[L, 2S]` scores (see
//! [`RelativeIndex`]); both are exact re-orderings of transformers' arithmetic.

use candle_core::{DType, Tensor};
use candle_nn::{LayerNorm, Linear};

use crate::config::DebertaV2Config;
use crate::model::relative_position::RelativeIndex;
use crate::nn::{apply, layer_norm, linear};
use crate::weights::Weights;
use crate::Result;

/// Position keys / queries per head, `[heads, 2S, head_size]`, for the active terms.
struct PositionProjections {
    key: Option<Tensor>,
    query: Option<Tensor>,
}

pub struct DisentangledSelfAttention {
    query_proj: Linear,
    key_proj: Linear,
    value_proj: Linear,
    positions: Option<PositionProjections>,
    heads: usize,
    head_size: usize,
    /// `sqrt(head_size * (1 + [c2p] + [p2c]))`, computed in f32 as transformers does.
    scale: f64,
}

/// The shared per-forward tensors every layer's attention reads.
pub struct AttentionContext<'a> {
    /// `[B, 1, L, L]` u8: 1 where query i may attend to key j.
    pub mask: &'a Tensor,
    /// Gather tables for the relative terms (present when relative attention is on).
    pub index: Option<&'a RelativeIndex>,
}

impl DisentangledSelfAttention {
    /// `rel_embeddings`: the (normalised) relative embedding table `[2S, hidden]`, when relative
    /// attention is on.
    pub fn load(
        w: &Weights,
        cfg: &DebertaV2Config,
        rel_embeddings: Option<&Tensor>,
    ) -> Result<Self> {
        let h = cfg.hidden_size;
        let all = cfg.num_attention_heads * cfg.attention_head_size();
        let query_proj = linear(&w.pp("query_proj"), h, all, true)?;
        let key_proj = linear(&w.pp("key_proj"), h, all, true)?;
        let value_proj = linear(&w.pp("value_proj"), h, all, true)?;
        let mut attention = Self {
            query_proj,
            key_proj,
            value_proj,
            positions: None,
            heads: cfg.num_attention_heads,
            head_size: cfg.attention_head_size(),
            scale: scale(cfg),
        };
        if let Some(rel) = rel_embeddings {
            attention.positions = Some(attention.project_positions(w, cfg, rel)?);
        }
        Ok(attention)
    }

    fn project_positions(
        &self,
        w: &Weights,
        cfg: &DebertaV2Config,
        rel: &Tensor,
    ) -> Result<PositionProjections> {
        let (h, all) = (cfg.hidden_size, self.heads * self.head_size);
        let project = |proj: &Linear| -> Result<Tensor> {
            // [2S, hidden] -> [2S, heads*d] -> [heads, 2S, d]
            let p = apply(proj, rel)?;
            let rows = p.dim(0)?;
            Ok(p.reshape((rows, self.heads, self.head_size))?
                .transpose(0, 1)?
                .contiguous()?)
        };
        let (key, query) = if cfg.share_att_key {
            (
                cfg.has_c2p().then(|| project(&self.key_proj)).transpose()?,
                cfg.has_p2c()
                    .then(|| project(&self.query_proj))
                    .transpose()?,
            )
        } else {
            let key = if cfg.has_c2p() {
                Some(project(&linear(&w.pp("pos_key_proj"), h, all, true)?)?)
            } else {
                None
            };
            let query = if cfg.has_p2c() {
                Some(project(&linear(&w.pp("pos_query_proj"), h, all, true)?)?)
            } else {
                None
            };
            (key, query)
        };
        Ok(PositionProjections { key, query })
    }

    /// `[B, L, heads*d]` -> `[B, heads, L, d]`
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        Ok(x.reshape((b, l, self.heads, self.head_size))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// `hidden`: `[B, L, hidden]`. Returns the context `[B, L, heads*d]` and the attention
    /// probabilities `[B, heads, L, L]`.
    pub fn forward(&self, hidden: &Tensor, ctx: &AttentionContext) -> Result<(Tensor, Tensor)> {
        let (b, l, _) = hidden.dims3()?;
        let q = self.split_heads(&apply(&self.query_proj, hidden)?)?;
        let k = self.split_heads(&apply(&self.key_proj, hidden)?)?;
        let v = self.split_heads(&apply(&self.value_proj, hidden)?)?;
        // transformers divides K by the scale before the product (fp16 overflow guard).
        let k_scaled = (&k / self.scale)?;
        let mut scores = q.matmul(&k_scaled.t()?.contiguous()?)?; // [B, H, L, L]
        if let (Some(pos), Some(index)) = (&self.positions, ctx.index) {
            if let Some(rel) = self.relative_scores(pos, index, &q, &k)? {
                scores = (scores + rel)?;
            }
        }
        let probs = masked_softmax(&scores, ctx.mask)?;
        let context = probs.matmul(&v)?; // [B, H, L, d]
        let context = context
            .transpose(1, 2)?
            .reshape((b, l, self.heads * self.head_size))?;
        Ok((context, probs))
    }

    /// c2p + p2c, each divided by the scale; `None` when no term is active.
    fn relative_scores(
        &self,
        pos: &PositionProjections,
        index: &RelativeIndex,
        q: &Tensor,
        k: &Tensor,
    ) -> Result<Option<Tensor>> {
        let mut score: Option<Tensor> = None;
        if let Some(pos_key) = &pos.key {
            let c2p = gather_positions(&q.broadcast_matmul(&pos_key.t()?)?, &index.c2p)?;
            score = Some((c2p / self.scale)?);
        }
        if let Some(pos_query) = &pos.query {
            let p2c = gather_positions(&k.broadcast_matmul(&pos_query.t()?)?, &index.p2c)?;
            let p2c = (p2c / self.scale)?;
            score = Some(match score {
                Some(s) => (s + p2c)?,
                None => p2c,
            });
        }
        Ok(score)
    }
}

/// `sqrt(d * scale_factor)` in f32, as `scaled_size_sqrt` computes it.
fn scale(cfg: &DebertaV2Config) -> f64 {
    let factor = 1 + usize::from(cfg.has_c2p()) + usize::from(cfg.has_p2c());
    ((cfg.attention_head_size() * factor) as f32).sqrt() as f64
}

/// `[B, H, L, 2S]` position scores -> `[B, H, L, L]` through a flat index of `L*L` entries.
fn gather_positions(scores: &Tensor, flat_index: &Tensor) -> Result<Tensor> {
    let (b, h, l, width) = scores.dims4()?;
    let flat = scores.contiguous()?.reshape((b * h, l * width))?;
    Ok(flat.index_select(flat_index, 1)?.reshape((b, h, l, l))?)
}

/// `masked_fill(~mask, finfo(f32).min)` then softmax over keys, as transformers 5.x does:
/// fully masked rows (padded queries) become uniform.
fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.broadcast_as(scores.shape())?;
    let min = Tensor::new(f32::MIN, scores.device())?
        .to_dtype(DType::F32)?
        .broadcast_as(scores.shape())?;
    let filled = mask.where_cond(scores, &min)?;
    Ok(candle_nn::ops::softmax_last_dim(&filled)?)
}

/// `DebertaV2Attention`: self-attention, then `LayerNorm(dense(context) + input)`.
pub struct DebertaV2Attention {
    attention: DisentangledSelfAttention,
    dense: Linear,
    layer_norm: LayerNorm,
}

impl DebertaV2Attention {
    pub fn load(
        w: &Weights,
        cfg: &DebertaV2Config,
        rel_embeddings: Option<&Tensor>,
    ) -> Result<Self> {
        let out = w.pp("output");
        Ok(Self {
            attention: DisentangledSelfAttention::load(&w.pp("self"), cfg, rel_embeddings)?,
            dense: linear(&out.pp("dense"), cfg.hidden_size, cfg.hidden_size, true)?,
            layer_norm: layer_norm(&out.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
        })
    }

    pub fn forward(&self, hidden: &Tensor, ctx: &AttentionContext) -> Result<(Tensor, Tensor)> {
        let (context, probs) = self.attention.forward(hidden, ctx)?;
        let out = (apply(&self.dense, &context)? + hidden)?;
        Ok((apply(&self.layer_norm, &out)?, probs))
    }
}
