//! Where a run's micro-batches come from: one fixed batch (`--tokenized`, the optimiser check)
//! or a dataset read in a shuffled order per epoch. Micro-batch `k` of a run is a pure function
//! of `k` and the seed, so a resumed run sees exactly the batches an uninterrupted one would.

use candle_core::{Device, Tensor};
use deberta::ModelInput;

use crate::Result;

/// Labels owned by a batch (the borrowed [`deberta::Labels`] a forward pass takes): the data
/// module's label tensors.
pub use crate::data::LabelTensors as OwnedLabels;

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

/// A dataset read in a new shuffled order each epoch (`RandomSampler`, seeded by the run's
/// seed and the epoch), in micro-batches of `batch_size` (the last one of an epoch may be
/// smaller, as `DataLoader(drop_last=False)`). Masked-LM batches are masked from
/// `(seed, micro-batch index)`.
pub struct DatasetBatches {
    dataset: crate::data::Dataset,
    batch_size: usize,
    seed: u64,
    order: std::sync::Mutex<Option<(u64, Vec<usize>)>>,
}

impl DatasetBatches {
    pub fn new(dataset: crate::data::Dataset, batch_size: usize, seed: u64) -> Result<Self> {
        if dataset.is_empty() {
            return Err(crate::Error::invalid("the training set has no example"));
        }
        Ok(Self {
            dataset,
            batch_size: batch_size.max(1),
            seed,
            order: std::sync::Mutex::new(None),
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &crate::data::Dataset {
        &self.dataset
    }

    fn epoch_order(&self, epoch: u64) -> Result<Vec<usize>> {
        let mut slot = self
            .order
            .lock()
            .map_err(|_| crate::Error::invalid("the data order lock was poisoned"))?;
        if let Some((e, order)) = slot.as_ref() {
            if *e == epoch {
                return Ok(order.clone());
            }
        }
        let mut rng = crate::rng::SplitMix::new(
            self.seed ^ 0x5A3F_0000_0000 ^ epoch.wrapping_mul(0x9E37_79B9),
        );
        let order = rng.permutation(self.dataset.len());
        *slot = Some((epoch, order.clone()));
        Ok(order)
    }
}

impl BatchSource for DatasetBatches {
    fn per_epoch(&self) -> u64 {
        self.dataset.len().div_ceil(self.batch_size) as u64
    }

    fn micro_batch(&self, index: u64, device: &Device) -> Result<MicroBatch> {
        let per_epoch = self.per_epoch().max(1);
        let (epoch, position) = (index / per_epoch, (index % per_epoch) as usize);
        let order = self.epoch_order(epoch)?;
        let start = position * self.batch_size;
        let end = (start + self.batch_size).min(order.len());
        let indices = order.get(start..end).unwrap_or(&[]);
        let masking = self.dataset.mlm.map(|_| crate::data::MaskingSeed {
            seed: self.seed,
            step: index,
        });
        let batch = self.dataset.batch(indices, masking)?;
        let (input, labels) = batch.to_tensors(device)?;
        Ok(MicroBatch {
            input,
            labels,
            examples: indices.len(),
            epoch,
        })
    }
}
