//! Unpadded batches: sequences of different lengths run together without padding them to the
//! longest. On the fused CPU path the embeddings and the encoder's linear layers run over the
//! concatenated tokens of all sequences (`[T, hidden]`, `T` = the sum of the lengths) and
//! attention (and the conv layer) per sequence at its own length, so a batch costs the sum of
//! its sequences' costs. On the candle path (other devices and dtypes, training) the sequences
//! are padded internally and the padding cut off again, so callers get the same API everywhere.

use candle_core::{Device, Tensor};

use crate::config::DebertaV2Config;
use crate::model::{DebertaV2Model, ForwardOptions, ModelInput};
use crate::plan::Backend;
use crate::{Error, Result};

/// One input sequence of an unpadded batch: its token ids and, optionally, its token type ids
/// (ignored when the model has no token types; zeros by default). Positions are `0..len`.
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    pub input_ids: &'a [u32],
    pub token_type_ids: Option<&'a [u32]>,
}

impl<'a> Sequence<'a> {
    /// Ids only.
    pub fn new(input_ids: &'a [u32]) -> Self {
        Self {
            input_ids,
            token_type_ids: None,
        }
    }

    /// Adds token type ids (one per token).
    pub fn with_token_type_ids(mut self, ids: &'a [u32]) -> Self {
        self.token_type_ids = Some(ids);
        self
    }
}

/// The backbone's output on an unpadded batch: every sequence's last hidden state,
/// concatenated row by row.
#[derive(Debug, Clone)]
pub struct PackedOutput {
    /// `[T, hidden]`: sequence `s` in rows `lens[0] + ... + lens[s-1]` onwards.
    pub hidden: Tensor,
    /// Each sequence's length, in input order.
    pub lens: Vec<usize>,
}

impl PackedOutput {
    /// Cuts `rows [T, ...]` (any per-token tensor of the batch) into one `[1, len, ...]`
    /// tensor per sequence.
    pub fn split(&self, rows: &Tensor) -> Result<Vec<Tensor>> {
        let mut row = 0;
        let mut out = Vec::with_capacity(self.lens.len());
        for &len in &self.lens {
            out.push(rows.narrow(0, row, len)?.unsqueeze(0)?);
            row += len;
        }
        Ok(out)
    }

    /// `[N, 1, hidden]`: each sequence's first token (what the pooled heads read).
    pub fn first_tokens(&self) -> Result<Tensor> {
        let mut starts = Vec::with_capacity(self.lens.len());
        let mut row = 0u32;
        for &len in &self.lens {
            starts.push(row);
            row += len as u32;
        }
        let n = starts.len();
        let index = Tensor::from_vec(starts, n, self.hidden.device())?;
        Ok(self.hidden.index_select(&index, 0)?.unsqueeze(1)?)
    }
}

/// Validated sequences, concatenated: `[1, T]` ids, type ids and positions.
struct Packed {
    input_ids: Tensor,
    token_type_ids: Tensor,
    position_ids: Tensor,
    lens: Vec<usize>,
}

impl DebertaV2Model {
    /// Runs the backbone on sequences of different lengths; one last hidden state
    /// `[1, len, hidden]` per sequence, equal to the real-token rows of a padded batch. On
    /// the fused CPU path nothing is padded (see the module docs).
    pub fn forward_sequences(&self, sequences: &[Sequence]) -> Result<Vec<Tensor>> {
        let out = self.forward_packed(sequences)?;
        out.split(&out.hidden)
    }

    /// Whether [`Self::forward_packed`] runs without padding (the fused CPU path in inference);
    /// elsewhere it pads internally.
    pub fn runs_unpadded(&self) -> bool {
        matches!(self.plan.backend(), Backend::CpuFused(_))
    }

    /// [`Self::forward_sequences`] with the hidden states left concatenated (`[T, hidden]`),
    /// for heads that run over all tokens at once.
    pub fn forward_packed(&self, sequences: &[Sequence]) -> Result<PackedOutput> {
        if !self.runs_unpadded() {
            return self.forward_padded(sequences);
        }
        let packed = pack(sequences, &self.config, &self.device)?;
        crate::limits::check_unpadded(&self.config, &packed.lens)?;
        let tokens = packed.lens.iter().sum::<usize>();
        let mask = Tensor::ones((1, tokens), self.plan.dtype(), &self.device)?;
        let embeddings = self.embeddings.forward(
            &packed.input_ids,
            &packed.token_type_ids,
            &packed.position_ids,
            &mask,
            &self.mode,
        )?; // [1, T, H]
        let hidden =
            self.encoder
                .forward_unpadded(&embeddings.squeeze(0)?, &packed.lens, &self.plan)?;
        Ok(PackedOutput {
            hidden,
            lens: packed.lens,
        })
    }

    /// The candle path: one padded forward pass, the padding cut off again.
    fn forward_padded(&self, sequences: &[Sequence]) -> Result<PackedOutput> {
        let lens = check_sequences(sequences, &self.config)?;
        let max_len = lens.iter().copied().max().unwrap_or(0);
        let pad = self.config.pad_token_id.unwrap_or(0).max(0) as u32;
        let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for s in sequences {
            let n = max_len - s.input_ids.len();
            ids.extend(
                s.input_ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, n)),
            );
            match s.token_type_ids {
                Some(t) => types.extend(t.iter().copied()),
                None => types.extend(std::iter::repeat_n(0, s.input_ids.len())),
            }
            types.extend(std::iter::repeat_n(0, n));
            let real = std::iter::repeat_n(1u32, s.input_ids.len());
            mask.extend(real.chain(std::iter::repeat_n(0, n)));
        }
        let shape = (sequences.len(), max_len);
        let t = |v: Vec<u32>| Tensor::from_vec(v, shape, &self.device);
        let input = ModelInput::from_ids(t(ids)?)
            .with_attention_mask(t(mask)?)
            .with_token_type_ids(t(types)?);
        let out = self.forward(&input, ForwardOptions::default())?;
        let rows = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| Ok(out.last_hidden_state.get(i)?.narrow(0, 0, len)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(PackedOutput {
            hidden: Tensor::cat(&rows, 0)?,
            lens,
        })
    }
}

/// Checks every sequence (non-empty, ids in range, type ids one per token and in range, length
/// within the absolute positions) and concatenates them.
fn pack(sequences: &[Sequence], cfg: &DebertaV2Config, device: &Device) -> Result<Packed> {
    let lens = check_sequences(sequences, cfg)?;
    let tokens: usize = lens.iter().sum();
    let mut ids = Vec::with_capacity(tokens);
    let mut types = Vec::with_capacity(tokens);
    let mut positions = Vec::with_capacity(tokens);
    for s in sequences {
        ids.extend_from_slice(s.input_ids);
        match (s.token_type_ids, cfg.type_vocab_size) {
            (Some(t), n) if n > 0 => types.extend_from_slice(t),
            _ => types.extend(std::iter::repeat_n(0, s.input_ids.len())),
        }
        // Absolute positions restart at 0 in each sequence (read only with
        // position_biased_input).
        positions.extend(0..s.input_ids.len() as u32);
    }
    let t = |v: Vec<u32>| Tensor::from_vec(v, (1, tokens), device);
    Ok(Packed {
        input_ids: t(ids)?,
        token_type_ids: t(types)?,
        position_ids: t(positions)?,
        lens,
    })
}

/// Every sequence's length, after checking the sequences against the config; errors name the
/// sequence.
fn check_sequences(sequences: &[Sequence], cfg: &DebertaV2Config) -> Result<Vec<usize>> {
    if sequences.is_empty() {
        return Err(Error::input("no sequences to run"));
    }
    sequences
        .iter()
        .enumerate()
        .map(|(i, s)| check_sequence(i, s, cfg))
        .collect()
}

fn check_sequence(i: usize, s: &Sequence, cfg: &DebertaV2Config) -> Result<usize> {
    let len = s.input_ids.len();
    if len == 0 {
        return Err(Error::input(format!("sequence {i}: input_ids is empty")));
    }
    let max = cfg.max_position_embeddings;
    if cfg.position_biased_input && len > max {
        return Err(Error::input(format!(
            "sequence {i}: length {len} exceeds max_position_embeddings {max} of a model with \
             absolute positions (position_biased_input)"
        )));
    }
    check_ids(i, "input_ids", s.input_ids, cfg.vocab_size, "vocab_size")?;
    if let Some(types) = s.token_type_ids {
        if types.len() != len {
            return Err(Error::input(format!(
                "sequence {i}: {} token_type_ids for {len} input_ids",
                types.len()
            )));
        }
        if cfg.type_vocab_size > 0 {
            check_ids(
                i,
                "token_type_ids",
                types,
                cfg.type_vocab_size,
                "type_vocab_size",
            )?;
        }
    }
    Ok(len)
}

fn check_ids(i: usize, name: &str, ids: &[u32], limit: usize, limit_name: &str) -> Result<()> {
    match ids.iter().find(|&&v| v as usize >= limit) {
        Some(bad) => Err(Error::input(format!(
            "sequence {i}: {name} contains {bad}, outside 0..{limit} ({limit_name})"
        ))),
        None => Ok(()),
    }
}
