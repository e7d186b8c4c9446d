//! Where a run's micro-batches come from: one fixed batch (`--tokenized`, the optimiser check)
//! or a dataset read in a shuffled order per epoch. Micro-batch `k` of a run is a pure function
//! of `k` and the seed, so a resumed run sees exactly the batches an uninterrupted one would.

use candle_core::{Device, Tensor};
use deberta::{Labels, ModelInput};

use crate::Result;

/// Labels owned by a batch (the borrowed [`Labels`] a forward pass takes).
#[derive(Debug, Clone, Default)]
pub struct OwnedLabels {
    pub labels: Option<Tensor>,
    pub start_positions: Option<Tensor>,
    pub end_positions: Option<Tensor>,
}

impl OwnedLabels {
    pub fn as_labels(&self) -> Labels<'_> {
        Labels {
            labels: self.labels.as_ref(),
            start_positions: self.start_positions.as_ref(),
            end_positions: self.end_positions.as_ref(),
        }
    }
}

/// One micro-batch, ready for the model.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    pub input: ModelInput,
    pub labels: OwnedLabels,
    /// Examples in the batch (for examples/s).
    pub examples: usize,
    /// The epoch it belongs to (0-based).
    pub epoch: u64,
}

/// A source of micro-batches.
pub trait BatchSource {
    /// Micro-batches in one epoch (at least 1).
    fn per_epoch(&self) -> u64;
    /// Micro-batch `index` of the run (global, across epochs).
    fn micro_batch(&self, index: u64, device: &Device) -> Result<MicroBatch>;
}

/// The same batch at every step.
pub struct FixedBatch {
    input: ModelInput,
    labels: OwnedLabels,
}

impl FixedBatch {
    pub fn new(input: ModelInput, labels: OwnedLabels) -> Self {
        Self { input, labels }
    }
}

impl BatchSource for FixedBatch {
    fn per_epoch(&self) -> u64 {
        1
    }

    fn micro_batch(&self, index: u64, device: &Device) -> Result<MicroBatch> {
        let to = |t: &Tensor| t.to_device(device);
        let input = ModelInput {
            input_ids: to(&self.input.input_ids)?,
            attention_mask: self.input.attention_mask.as_ref().map(to).transpose()?,
            token_type_ids: self.input.token_type_ids.as_ref().map(to).transpose()?,
            position_ids: self.input.position_ids.as_ref().map(to).transpose()?,
        };
        let labels = OwnedLabels {
            labels: self.labels.labels.as_ref().map(to).transpose()?,
            start_positions: self.labels.start_positions.as_ref().map(to).transpose()?,
            end_positions: self.labels.end_positions.as_ref().map(to).transpose()?,
        };
        Ok(MicroBatch {
            examples: self.input.input_ids.dims().first().copied().unwrap_or(1),
            input,
            labels,
            epoch: index,
        })
    }
}
