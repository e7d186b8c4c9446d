//! `DisentangledSelfAttention` and `DebertaV2SelfOutput`: content-to-content attention plus the
//! content-to-position (c2p) and position-to-content (p2c) terms over relative embeddings.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L131>
//!
//! Same arithmetic as transformers, reordered for speed (the golden tests hold it to 1e-4):
//! - Q, K and V come from one fused projection, laid out head-major `[H, B, L, d]` so the
//!   position terms are one GEMM per head over all `B*L` tokens;
//! - the position projections (`key_proj`/`query_proj`, or `pos_key_proj`/`pos_query_proj`, of
//!   the normalised relative embeddings) depend only on the weights: they are computed once at
//!   load, already divided by the scale where transformers divides the product;
//! - only the relative-position slots a sequence length can reach are multiplied, and the
//!   `[L, L]` gathers are flat `index_select`s over `[L, W]` scores ([`RelativeIndex`]);
//! - the mask is an additive `f32::MIN` bias, which equals transformers' `masked_fill(finfo.min)`
//!   followed by softmax (fully masked rows stay uniform, masked keys get exactly 0).

use candle_core::{IndexOp, Tensor};
use candle_nn::{LayerNorm, Linear};

use crate::config::DebertaV2Config;
use crate::model::relative_position::RelativeIndex;
use crate::nn::{apply, layer_norm, linear};
use crate::weights::Weights;
use crate::Result;

/// Position keys / queries per head, `[heads, 2S, head_size]`, for the active terms.
struct PositionProjections {
    /// `Kr / scale` for c2p.
    key: Option<Tensor>,
    /// `Qr` for p2c (the content keys it multiplies are already scaled).
    query: Option<Tensor>,
}

pub struct DisentangledSelfAttention {
    /// `[3 * heads * d, hidden]`: query, key and value projections stacked.
    qkv: Linear,
    positions: Option<PositionProjections>,
    heads: usize,
    head_size: usize,
    /// `sqrt(head_size * (1 + [c2p] + [p2c]))`, computed in f32 as transformers does.
    scale: f64,
}

/// The shared per-forward tensors every layer's attention reads.
pub struct AttentionContext<'a> {
    /// `[1, B, L, L]` additive bias: 0 where query i may attend to key j, `f32::MIN` elsewhere.
    pub bias: &'a Tensor,
    /// Gather tables for the relative terms (present when relative attention is on).
    pub index: Option<&'a RelativeIndex>,
    /// Per sequence, whether its bias block masks anything (the CPU fast path does not read
    /// the all-zero ones).
    pub masked: Vec<bool>,
}

impl<'a> AttentionContext<'a> {
    /// The context for `bias` `[1, B, L, L]`, with [`Self::masked`] derived from it once for
    /// all layers.
    pub fn new(bias: &'a Tensor, index: Option<&'a RelativeIndex>) -> Result<Self> {
        // [1, B, L, L] -> [B]: 1 where any entry is non-zero.
        let masked = bias
            .ne(0f64)?
            .squeeze(0)?
            .flatten_from(1)?
            .max(candle_core::D::Minus1)?
            .to_vec1::<u8>()?;
        Ok(Self {
            bias,
            index,
            masked: masked.into_iter().map(|m| m != 0).collect(),
        })
    }
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
        let query = linear(&w.pp("query_proj"), h, all, true)?;
        let key = linear(&w.pp("key_proj"), h, all, true)?;
        let value = linear(&w.pp("value_proj"), h, all, true)?;
        let mut attention = Self {
            qkv: fuse(&[&query, &key, &value])?,
            positions: None,
            heads: cfg.num_attention_heads,
            head_size: cfg.attention_head_size(),
            scale: scale(cfg),
        };
        if let Some(rel) = rel_embeddings {
            attention.positions = Some(attention.project_positions(w, cfg, rel, &query, &key)?);
        }
        Ok(attention)
    }

    fn project_positions(
        &self,
        w: &Weights,
        cfg: &DebertaV2Config,
        rel: &Tensor,
        query: &Linear,
        key: &Linear,
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
        let key_proj = if cfg.share_att_key || !cfg.has_c2p() {
            None
        } else {
            Some(linear(&w.pp("pos_key_proj"), h, all, true)?)
        };
        let query_proj = if cfg.share_att_key || !cfg.has_p2c() {
            None
        } else {
            Some(linear(&w.pp("pos_query_proj"), h, all, true)?)
        };
        let key_source = key_proj.as_ref().unwrap_or(key);
        let query_source = query_proj.as_ref().unwrap_or(query);
        Ok(PositionProjections {
            key: cfg
                .has_c2p()
                .then(|| project(key_source).and_then(|t| Ok((t / self.scale)?)))
                .transpose()?,
            query: cfg.has_p2c().then(|| project(query_source)).transpose()?,
        })
    }

    /// The fused QKV projection, the position tables, heads, head size and scale, for the CPU
    /// fast path.
    pub(crate) fn parts(&self) -> (&Linear, Option<&Tensor>, Option<&Tensor>, usize, usize, f64) {
        let (key, query) = match &self.positions {
            Some(p) => (p.key.as_ref(), p.query.as_ref()),
            None => (None, None),
        };
        (
            &self.qkv,
            key,
            query,
            self.heads,
            self.head_size,
            self.scale,
        )
    }

    /// `hidden`: `[B, L, hidden]`. Returns the context `[B, L, heads*d]` and the attention
    /// probabilities, head-major: `[heads, B, L, L]`.
    pub fn forward(&self, hidden: &Tensor, ctx: &AttentionContext) -> Result<(Tensor, Tensor)> {
        let (b, l, _) = hidden.dims3()?;
        let (h, d) = (self.heads, self.head_size);
        // [B, L, 3*H*d] -> [B, L, 3, H, d] -> [3, H, B, L, d]
        let qkv = apply(&self.qkv, hidden)?
            .reshape((b, l, 3, h, d))?
            .permute((2, 3, 0, 1, 4))?
            .contiguous()?;
        let q = qkv.i(0)?;
        // transformers divides K by the scale before the product (fp16 overflow guard).
        let k = (qkv.i(1)? / self.scale)?;
        let v = qkv.i(2)?;
        // [H*B, L, d] x [H*B, d, L] -> [H*B, L, L]
        let mut scores = q
            .reshape((h * b, l, d))?
            .matmul(&k.reshape((h * b, l, d))?.t()?)?;
        if let (Some(pos), Some(index)) = (&self.positions, ctx.index) {
            if let Some(rel) = relative_scores(pos, index, &q, &k)? {
                scores = (scores + rel.reshape((h * b, l, l))?)?;
            }
        }
        // [H*B, L, L] -> [H, B, L, L] + [1, B, L, L]
        let scores = scores.reshape((h, b, l, l))?.broadcast_add(ctx.bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
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
    Ok(flat.index_select(flat_index, 1)?)
}

/// Stacks linear layers along their outputs: one GEMM instead of several.
fn fuse(parts: &[&Linear]) -> Result<Linear> {
    let weights: Vec<&Tensor> = parts.iter().map(|p| p.weight()).collect();
    let biases = parts
        .iter()
        .map(|p| p.bias().cloned())
        .collect::<Option<Vec<Tensor>>>();
    let bias = biases.map(|b| Tensor::cat(&b, 0)).transpose()?;
    Ok(Linear::new(Tensor::cat(&weights, 0)?, bias))
}

/// `sqrt(d * scale_factor)` in f32, as `scaled_size_sqrt` computes it.
fn scale(cfg: &DebertaV2Config) -> f64 {
    let factor = 1 + usize::from(cfg.has_c2p()) + usize::from(cfg.has_p2c());
    ((cfg.attention_head_size() * factor) as f32).sqrt() as f64
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

    /// The self-attention, output projection and LayerNorm, for the CPU fast path.
    pub(crate) fn parts(&self) -> (&DisentangledSelfAttention, &Linear, &LayerNorm) {
        (&self.attention, &self.dense, &self.layer_norm)
    }

    /// Returns the attention output and the head-major probabilities `[heads, B, L, L]`.
    pub fn forward(&self, hidden: &Tensor, ctx: &AttentionContext) -> Result<(Tensor, Tensor)> {
        let (context, probs) = self.attention.forward(hidden, ctx)?;
        let out = (apply(&self.dense, &context)? + hidden)?;
        Ok((apply(&self.layer_norm, &out)?, probs))
    }
}
