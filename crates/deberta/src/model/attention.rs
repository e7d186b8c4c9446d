//! `DisentangledSelfAttention` and `DebertaV2SelfOutput`: content-to-content attention plus the
//! content-to-position (c2p) and position-to-content (p2c) terms over relative embeddings.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L131>
//!
//! This is the candle path: it computes from the parameters on every call (so it trains), in
//! the model's compute dtype. Same arithmetic as transformers, reordered (the golden tests hold
//! it to 1e-4):
//! - Q, K and V are laid out head-major `[H, B, L, d]` so the position terms are one GEMM per
//!   head over all `B*L` tokens;
//! - the position projections (`key_proj`/`query_proj`, or `pos_key_proj`/`pos_query_proj`, of
//!   the normalised relative embeddings) are computed once per layer and call, the key table
//!   already divided by the scale where transformers divides the product;
//! - only the relative-position slots a sequence length can reach are multiplied, and the
//!   `[L, L]` gathers are flat `index_select`s over `[L, W]` scores ([`RelativeIndex`]);
//! - the mask is an additive bias of the dtype's minimum, which equals transformers'
//!   `masked_fill(finfo.min)`
//!   followed by softmax (fully masked rows stay uniform, masked keys get exactly 0).

use candle_core::{DType, Tensor};

use crate::config::DebertaV2Config;
use crate::dropout::RunMode;
use crate::nn::{layer_norm, linear, softmax_last_dim, LayerNorm, Linear};
use crate::relative_position::RelativeIndex;
use crate::weights::Weights;
use crate::Result;

/// Position keys / queries per head, `[heads, 2S, head_size]`, for the active terms.
pub struct PositionProjections {
    /// `Kr / scale` for c2p.
    pub key: Option<Tensor>,
    /// `Qr` for p2c (the content keys it multiplies are already scaled).
    pub query: Option<Tensor>,
}

pub struct DisentangledSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    /// `pos_key_proj` / `pos_query_proj` when `share_att_key` is off and the term is on.
    pos_key: Option<Linear>,
    pos_query: Option<Linear>,
    c2p: bool,
    p2c: bool,
    heads: usize,
    head_size: usize,
    /// `sqrt(head_size * (1 + [c2p] + [p2c]))`, computed in f32 as transformers does.
    scale: f64,
    /// `attention_probs_dropout_prob` and `hidden_dropout_prob` (`pos_dropout`).
    probs_dropout: f64,
    pos_dropout: f64,
}

/// The shared per-forward tensors every layer's attention reads on the candle path.
pub struct AttentionContext<'a> {
    /// `[1, B, L, L]` additive bias in the compute dtype: 0 where query i may attend to key j,
    /// the dtype's minimum elsewhere.
    pub bias: &'a Tensor,
    /// `[1, B, L, L]` u8: 1 where query i may attend to key j. Training mode masks with it
    /// (`masked_fill`, which also stops the gradient at masked scores) instead of adding the
    /// bias, whose gradient would reach the scores of fully masked query rows.
    pub keep: &'a Tensor,
    /// Gather tables for the relative terms (present when relative attention is on).
    pub index: Option<&'a RelativeIndex>,
    /// The (normalised) relative embedding table `[2S, hidden]` (present when relative
    /// attention is on).
    pub rel_embeddings: Option<&'a Tensor>,
}

impl DisentangledSelfAttention {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let all = cfg.num_attention_heads * cfg.attention_head_size();
        let separate = cfg.relative_attention && !cfg.share_att_key;
        let pos_key = if separate && cfg.has_c2p() {
            Some(linear(&w.pp("pos_key_proj"), h, all, true)?)
        } else {
            None
        };
        let pos_query = if separate && cfg.has_p2c() {
            Some(linear(&w.pp("pos_query_proj"), h, all, true)?)
        } else {
            None
        };
        Ok(Self {
            query: linear(&w.pp("query_proj"), h, all, true)?,
            key: linear(&w.pp("key_proj"), h, all, true)?,
            value: linear(&w.pp("value_proj"), h, all, true)?,
            pos_key,
            pos_query,
            c2p: cfg.relative_attention && cfg.has_c2p(),
            p2c: cfg.relative_attention && cfg.has_p2c(),
            heads: cfg.num_attention_heads,
            head_size: cfg.attention_head_size(),
            scale: scale(cfg),
            probs_dropout: cfg.attention_probs_dropout_prob,
            pos_dropout: cfg.hidden_dropout_prob,
        })
    }

    /// The parameters, by role, for the fused CPU path's preparations.
    pub(crate) fn parts(&self) -> SelfAttentionParts<'_> {
        SelfAttentionParts {
            query: &self.query,
            key: &self.key,
            value: &self.value,
            pos_key: self.pos_key.as_ref().unwrap_or(&self.key),
            pos_query: self.pos_query.as_ref().unwrap_or(&self.query),
            heads: self.heads,
            head_size: self.head_size,
            scale: self.scale,
        }
    }

    /// `rel [2S, hidden]` -> the position tables (key already divided by the scale).
    pub(crate) fn project_positions(
        &self,
        rel: &Tensor,
        mode: &RunMode,
    ) -> Result<PositionProjections> {
        let parts = self.parts();
        let project = |proj: &Linear| -> Result<Tensor> {
            // [2S, hidden] -> [2S, heads*d] -> [heads, 2S, d]
            let p = proj.forward(rel, mode)?;
            let rows = p.dim(0)?;
            Ok(p.reshape((rows, self.heads, self.head_size))?
                .transpose(0, 1)?
                .contiguous()?)
        };
        Ok(PositionProjections {
            key: self
                .c2p
                .then(|| project(parts.pos_key).and_then(|t| Ok((t / self.scale)?)))
                .transpose()?,
            query: self.p2c.then(|| project(parts.pos_query)).transpose()?,
        })
    }

    /// `[B, L, hidden]` -> `[H, B, L, d]`
    fn heads_of(&self, proj: &Linear, hidden: &Tensor, mode: &RunMode) -> Result<Tensor> {
        let (b, l, _) = hidden.dims3()?;
        Ok(proj
            .forward(hidden, mode)?
            .reshape((b, l, self.heads, self.head_size))?
            .permute((2, 0, 1, 3))?
            .contiguous()?)
    }

    /// `hidden`: `[B, L, hidden]`. Returns the context `[B, L, heads*d]` and the attention
    /// probabilities, head-major: `[heads, B, L, L]`.
    pub fn forward(
        &self,
        hidden: &Tensor,
        ctx: &AttentionContext,
        mode: &RunMode,
    ) -> Result<(Tensor, Tensor)> {
        let (b, l, _) = hidden.dims3()?;
        let (h, d) = (self.heads, self.head_size);
        let q = self.heads_of(&self.query, hidden, mode)?;
        // transformers divides K by the scale before the product (fp16 overflow guard).
        let k = (self.heads_of(&self.key, hidden, mode)? / self.scale)?;
        let v = self.heads_of(&self.value, hidden, mode)?;
        // [H*B, L, d] x [H*B, d, L] -> [H*B, L, L]
        let mut scores = q
            .reshape((h * b, l, d))?
            .matmul(&k.reshape((h * b, l, d))?.t()?)?;
        if let (Some(rel), Some(index)) = (ctx.rel_embeddings, ctx.index) {
            let rel = mode.dropout(rel, self.pos_dropout)?;
            let pos = self.project_positions(&rel, mode)?;
            if let Some(rel) = relative_scores(&pos, index, &q, &k)? {
                scores = (scores + rel.reshape((h * b, l, l))?)?;
            }
        }
        // [H*B, L, L] -> [H, B, L, L] + [1, B, L, L]
        let scores = scores.reshape((h, b, l, l))?;
        let probs = if mode.is_train()
            && ctx.keep.dtype() == DType::U8
            && crate::train_ops::applies(&[&scores])
        {
            // One fused op (and one backward node) for the select and the softmax.
            crate::train_ops::masked_softmax(&scores, ctx.keep)?
        } else {
            softmax_last_dim(&mask_scores(scores, ctx, mode)?, mode)?
        };
        let dropped = mode.dropout(&probs, self.probs_dropout)?;
        let context = dropped
            .reshape((h * b, l, l))?
            .matmul(&v.reshape((h * b, l, d))?)?; // [H*B, L, d]
                                                  // [H, B, L, d] -> [B, L, H, d] -> [B, L, H*d]
        let context = context
            .reshape((h, b, l, d))?
            .permute((1, 2, 0, 3))?
            .reshape((b, l, h * d))?;
        Ok((context, probs))
    }
}

/// transformers' `masked_fill(~mask, finfo.min)` on `scores [H, B, L, L]`: an additive bias in
/// inference (same values), a select in training (same values, and no gradient reaches a
/// masked score, as with PyTorch's `masked_fill`).
fn mask_scores(scores: Tensor, ctx: &AttentionContext, mode: &RunMode) -> Result<Tensor> {
    if !mode.is_train() {
        return Ok(scores.broadcast_add(ctx.bias)?);
    }
    let shape = scores.shape().clone();
    let keep = ctx.keep.broadcast_as(&shape)?;
    Ok(keep.where_cond(&scores, &ctx.bias.broadcast_as(&shape)?)?)
}

/// A self-attention's parameters by role (the position projections resolved to the layers
/// `share_att_key` selects).
pub(crate) struct SelfAttentionParts<'a> {
    pub query: &'a Linear,
    pub key: &'a Linear,
    pub value: &'a Linear,
    pub pos_key: &'a Linear,
    pub pos_query: &'a Linear,
    pub heads: usize,
    pub head_size: usize,
    pub scale: f64,
}

/// c2p + p2c over the active slots, `[H, B*L, L]`-shaped as `[H*B, L*L]`; `None` when neither
/// term is on. `q`, `k`: `[H, B, L, d]` (k already scaled).
fn relative_scores(
    pos: &PositionProjections,
    index: &RelativeIndex,
    q: &Tensor,
    k: &Tensor,
) -> Result<Option<Tensor>> {
    let mut score: Option<Tensor> = None;
    for (table, content, flat_index) in [(&pos.key, q, &index.c2p), (&pos.query, k, &index.p2c)] {
        let Some(table) = table else { continue };
        let term = gather_positions(content, table, index, flat_index)?;
        score = Some(match score {
            Some(s) => (s + term)?,
            None => term,
        });
    }
    Ok(score)
}

/// `content [H, B, L, d]` against the active rows of `table [H, 2S, d]`, gathered to `[H*B, L*L]`.
fn gather_positions(
    content: &Tensor,
    table: &Tensor,
    index: &RelativeIndex,
    flat_index: &Tensor,
) -> Result<Tensor> {
    let (h, b, l, d) = content.dims4()?;
    let active = table
        .narrow(1, index.first_slot, index.width)?
        .contiguous()?; // [H, W, d]
                        // [H, B*L, d] x [H, d, W] -> [H, B*L, W] -> [H*B, L*W]
    let scores = content.reshape((h, b * l, d))?.matmul(&active.t()?)?;
    let flat = scores.reshape((h * b, l * index.width))?;
    if flat.track_op() && flat_index.dtype() == DType::U32 && crate::train_ops::applies(&[&flat]) {
        // Training: the gather and its scatter-add backward as one op, parallel over rows.
        return crate::train_ops::gather_columns(&flat, flat_index);
    }
    Ok(flat.index_select(flat_index, 1)?)
}

/// `sqrt(d * scale_factor)` in f32, as `scaled_size_sqrt` computes it.
fn scale(cfg: &DebertaV2Config) -> f64 {
    let factor = 1 + usize::from(cfg.has_c2p()) + usize::from(cfg.has_p2c());
    ((cfg.attention_head_size() * factor) as f32).sqrt() as f64
}

/// A `DebertaV2Attention`'s modules by role.
pub(crate) struct AttentionParts<'a> {
    pub self_attention: &'a DisentangledSelfAttention,
    pub dense: &'a Linear,
    pub layer_norm: &'a LayerNorm,
}

/// `DebertaV2Attention`: self-attention, then `LayerNorm(dropout(dense(context)) + input)`.
pub struct DebertaV2Attention {
    attention: DisentangledSelfAttention,
    dense: Linear,
    layer_norm: LayerNorm,
    /// `hidden_dropout_prob` (`DebertaV2SelfOutput.dropout`).
    dropout: f64,
}

impl DebertaV2Attention {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let out = w.pp("output");
        Ok(Self {
            attention: DisentangledSelfAttention::load(&w.pp("self"), cfg)?,
            dense: linear(&out.pp("dense"), cfg.hidden_size, cfg.hidden_size, true)?,
            layer_norm: layer_norm(&out.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// The self-attention (`self`) and the output projection and LayerNorm (`output`).
    pub(crate) fn parts(&self) -> AttentionParts<'_> {
        AttentionParts {
            self_attention: &self.attention,
            dense: &self.dense,
            layer_norm: &self.layer_norm,
        }
    }

    /// Returns the attention output and the head-major probabilities `[heads, B, L, L]`.
    pub fn forward(
        &self,
        hidden: &Tensor,
        ctx: &AttentionContext,
        mode: &RunMode,
    ) -> Result<(Tensor, Tensor)> {
        let (context, probs) = self.attention.forward(hidden, ctx, mode)?;
        let out = mode.dropout(&self.dense.forward(&context, mode)?, self.dropout)?;
        Ok((self.layer_norm.forward(&(out + hidden)?, mode)?, probs))
    }
}
