//! `DebertaV2Embeddings`: word (+ absolute position) (+ token type) embeddings, optional
//! projection, LayerNorm, then the mask multiply.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L480>

use candle_core::{Tensor, D};

use crate::config::DebertaV2Config;
use crate::dropout::RunMode;
use crate::nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear};
use crate::params::Param;
use crate::weights::Weights;
use crate::Result;

pub struct DebertaV2Embeddings {
    word_embeddings: Embedding,
    position_embeddings: Option<Embedding>,
    token_type_embeddings: Option<Embedding>,
    embed_proj: Option<Linear>,
    layer_norm: LayerNorm,
    /// `hidden_dropout_prob`, applied to the output in training.
    dropout: f64,
}

impl DebertaV2Embeddings {
    pub fn load(w: &Weights, cfg: &DebertaV2Config) -> Result<Self> {
        let e = cfg.embedding_size();
        let table = |name: &str, rows: usize| embedding(&w.pp(name), rows, e);
        let position_embeddings = if cfg.position_biased_input {
            Some(table("position_embeddings", cfg.max_position_embeddings)?)
        } else {
            None
        };
        let token_type_embeddings = if cfg.type_vocab_size > 0 {
            Some(table("token_type_embeddings", cfg.type_vocab_size)?)
        } else {
            None
        };
        let embed_proj = if e != cfg.hidden_size {
            Some(linear(&w.pp("embed_proj"), e, cfg.hidden_size, false)?)
        } else {
            None
        };
        Ok(Self {
            word_embeddings: table("word_embeddings", cfg.vocab_size)?
                .with_padding_idx(cfg.pad_token_id),
            position_embeddings,
            token_type_embeddings,
            embed_proj,
            layer_norm: layer_norm(&w.pp("LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// The word embedding matrix `[vocab, embedding_size]` (tied to the masked-LM decoder).
    pub fn word_embeddings(&self) -> &Param {
        self.word_embeddings.weight()
    }

    /// `input_ids`, `token_type_ids`, `position_ids`: `[B, L]` u32; `mask`: `[B, L]` in the
    /// compute dtype.
    /// Returns `[B, L, hidden]`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        position_ids: &Tensor,
        mask: &Tensor,
        mode: &RunMode,
    ) -> Result<Tensor> {
        let mut x = self.word_embeddings.forward(input_ids, mode)?;
        if let Some(pos) = &self.position_embeddings {
            x = (x + pos.forward(position_ids, mode)?)?;
        }
        if let Some(types) = &self.token_type_embeddings {
            x = (x + types.forward(token_type_ids, mode)?)?;
        }
        if let Some(proj) = &self.embed_proj {
            x = proj.forward(&x, mode)?;
        }
        let x = self.layer_norm.forward(&x, mode)?;
        // [B, L] -> [B, L, 1]: padded rows become exactly zero, after the LayerNorm.
        let x = x.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?;
        mode.dropout(&x, self.dropout)
    }
}
