//! Model inputs and their validation into the tensors the layers consume.

use candle_core::{DType, Device, Tensor, D};

use crate::config::DebertaV2Config;
use crate::{Error, Result};

/// The inputs of a forward pass, as transformers takes them.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// `[B, L]` token ids (any integer dtype).
    pub input_ids: Tensor,
    /// `[B, L]` (1 = token, 0 = padding) or `[B, L, L]` (1 where query i may attend to key j).
    /// Defaults to all ones.
    pub attention_mask: Option<Tensor>,
    /// `[B, L]`; ignored when `type_vocab_size` is 0. Defaults to zeros.
    pub token_type_ids: Option<Tensor>,
    /// `[B, L]` absolute positions; only used when `position_biased_input`. Defaults to `0..L`.
    pub position_ids: Option<Tensor>,
}

impl ModelInput {
    /// Ids only: no padding, default token types and positions.
    pub fn from_ids(input_ids: Tensor) -> Self {
        Self {
            input_ids,
            attention_mask: None,
            token_type_ids: None,
            position_ids: None,
        }
    }

    /// Adds a `[B, L]` or `[B, L, L]` attention mask.
    pub fn with_attention_mask(mut self, mask: Tensor) -> Self {
        self.attention_mask = Some(mask);
        self
    }

    /// Adds token type ids.
    pub fn with_token_type_ids(mut self, ids: Tensor) -> Self {
        self.token_type_ids = Some(ids);
        self
    }

    /// Adds position ids.
    pub fn with_position_ids(mut self, ids: Tensor) -> Self {
        self.position_ids = Some(ids);
        self
    }
}

/// Validated inputs on the model's device.
pub(crate) struct PreparedInput {
    pub input_ids: Tensor,
    pub token_type_ids: Tensor,
    pub position_ids: Tensor,
    /// `[B, L]` mask in the compute dtype, multiplied into the embeddings (and used by the
    /// conv layer).
    pub input_mask: Tensor,
    /// `[B, 1, L, L]` u8: 1 where attention is allowed.
    pub pair_mask: Tensor,
}

/// Checks ranks, shapes and id ranges and fills in the defaults.
pub(crate) fn prepare(
    input: &ModelInput,
    cfg: &DebertaV2Config,
    device: &Device,
    dtype: DType,
) -> Result<PreparedInput> {
    let (b, l) = input.input_ids.dims2().map_err(|_| {
        Error::input(format!(
            "input_ids must be [batch, len], got {:?}",
            input.input_ids.dims()
        ))
    })?;
    if b == 0 || l == 0 {
        return Err(Error::input(format!("input_ids is empty ({b}x{l})")));
    }
    crate::limits::check_forward(cfg, b, l)?;
    let input_ids = checked_ids(
        &input.input_ids,
        "input_ids",
        (b, l),
        cfg.vocab_size,
        "vocab_size",
        device,
    )?;
    let token_type_ids = match (&input.token_type_ids, cfg.type_vocab_size) {
        (Some(t), n) if n > 0 => {
            checked_ids(t, "token_type_ids", (b, l), n, "type_vocab_size", device)?
        }
        (Some(t), _) => {
            expect_shape(t, "token_type_ids", &[b, l])?;
            Tensor::zeros((b, l), DType::U32, device)?
        }
        (None, _) => Tensor::zeros((b, l), DType::U32, device)?,
    };
    let position_ids = prepare_positions(input, cfg, (b, l), device)?;
    let (input_mask, pair_mask) = prepare_masks(input.attention_mask.as_ref(), (b, l), device)?;
    Ok(PreparedInput {
        input_ids,
        token_type_ids,
        position_ids,
        input_mask: input_mask.to_dtype(dtype)?,
        pair_mask,
    })
}

fn prepare_positions(
    input: &ModelInput,
    cfg: &DebertaV2Config,
    (b, l): (usize, usize),
    device: &Device,
) -> Result<Tensor> {
    let max = cfg.max_position_embeddings;
    match &input.position_ids {
        Some(p) if cfg.position_biased_input => checked_ids(
            p,
            "position_ids",
            (b, l),
            max,
            "max_position_embeddings",
            device,
        ),
        Some(p) => {
            expect_shape(p, "position_ids", &[b, l])?;
            Ok(Tensor::zeros((b, l), DType::U32, device)?)
        }
        None if cfg.position_biased_input && l > max => Err(Error::input(format!(
            "sequence length {l} exceeds max_position_embeddings {max} of a model with absolute \
             positions (position_biased_input)"
        ))),
        None if cfg.position_biased_input => Ok(Tensor::arange(0u32, l as u32, device)?
            .unsqueeze(0)?
            .broadcast_as((b, l))?
            .contiguous()?),
        None => Ok(Tensor::zeros((b, l), DType::U32, device)?),
    }
}

/// Returns the `[B, L]` f32 input mask and the `[B, 1, L, L]` u8 pair mask.
fn prepare_masks(
    mask: Option<&Tensor>,
    (b, l): (usize, usize),
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let Some(mask) = mask else {
        let ones = Tensor::ones((b, l), DType::F32, device)?;
        return Ok((ones, Tensor::ones((b, 1, l, l), DType::U8, device)?));
    };
    let mask = mask.to_device(device)?.to_dtype(DType::F32)?;
    match mask.dims() {
        [mb, ml] if (*mb, *ml) == (b, l) => {
            // M[b, i, j] = m[b, i] * m[b, j]: padded queries see nothing.
            let pair = mask.unsqueeze(2)?.broadcast_mul(&mask.unsqueeze(1)?)?;
            Ok((mask, pair.ne(0f64)?.unsqueeze(1)?))
        }
        [mb, mq, mk] if (*mb, *mq, *mk) == (b, l, l) => {
            // transformers: input_mask = mask.sum(-2) > 0.
            let input_mask = mask.sum(D::Minus2)?.gt(0f64)?.to_dtype(DType::F32)?;
            Ok((input_mask, mask.ne(0f64)?.unsqueeze(1)?))
        }
        other => Err(Error::input(format!(
            "attention_mask must be [{b}, {l}] or [{b}, {l}, {l}], got {other:?}"
        ))),
    }
}

fn expect_shape(t: &Tensor, name: &str, dims: &[usize]) -> Result<()> {
    if t.dims() != dims {
        return Err(Error::input(format!(
            "{name} must have shape {dims:?}, got {:?}",
            t.dims()
        )));
    }
    Ok(())
}

/// Checks shape and `0 <= id < limit`, and returns the ids as u32 on `device`.
fn checked_ids(
    t: &Tensor,
    name: &str,
    (b, l): (usize, usize),
    limit: usize,
    limit_name: &str,
    device: &Device,
) -> Result<Tensor> {
    expect_shape(t, name, &[b, l])?;
    if t.dtype().is_float() {
        return Err(Error::input(format!(
            "{name} must be integers, got {:?}",
            t.dtype()
        )));
    }
    let values = t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
    if let Some(bad) = values.iter().find(|&&v| v < 0 || v as usize >= limit) {
        return Err(Error::input(format!(
            "{name} contains {bad}, outside 0..{limit} ({limit_name})"
        )));
    }
    let ids: Vec<u32> = values.iter().map(|&v| v as u32).collect();
    Ok(Tensor::from_vec(ids, (b, l), device)?)
}
