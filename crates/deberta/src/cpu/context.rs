//! What every layer of one fused-path forward reads besides its weights: the additive mask,
//! which sequences need it, and the relative slot tables. Built once per forward by the
//! encoder for this path only (the candle path builds its own index tensors).

use candle_core::Tensor;

use crate::relative_position::RelativeSlots;

/// The shared per-forward inputs of the fused layers.
pub struct AttentionContext<'a> {
    /// `[1, B, L, L]` f32 additive bias: 0 where query i may attend to key j, `f32::MIN`
    /// elsewhere.
    pub bias: &'a Tensor,
    /// The relative slots (present when relative attention is on).
    pub index: Option<&'a RelativeSlots>,
    /// Per sequence, whether its bias block masks anything (the all-zero ones are not read).
    pub masked: Vec<bool>,
}

/// The shared per-forward inputs of the fused layers on an unpadded batch: sequences
/// concatenated row by row, each attending at its own length.
pub struct UnpaddedContext<'a> {
    /// Each sequence's length, in row order.
    pub lens: &'a [usize],
    /// Each sequence's relative slots for its length (present when relative attention is on).
    pub slots: Vec<Option<&'a RelativeSlots>>,
}
