//! Training mode and dropout (`nn.Dropout`: zero with probability `p`, scale the rest by
//! `1 / (1 - p)`), deterministic for a seed.
//!
//! Every dropout call draws its mask from its own stream of a counter-based generator
//! (SplitMix64 over `(seed, call number, element)`), so a run is reproducible from the seed
//! whatever the device or thread count. Outside training mode dropout is the identity.
//!
//! Reference (sites and probabilities): `DebertaV2Embeddings`, `DisentangledSelfAttention`
//! (`dropout` on the probabilities, `pos_dropout` on the relative embeddings),
//! `DebertaV2SelfOutput`, `DebertaV2Output`, `ConvLayer`, `ContextPooler` and the heads in
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py>

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::Tensor;

use crate::{Error, Result};

/// The largest tensor one dropout call masks (elements), so a mask is never sized by a
/// hostile input beyond what the forward pass itself allocates.
const MAX_MASK_ELEMENTS: usize = 1 << 31;

/// Whether a forward pass trains, and the dropout stream it draws from.
#[derive(Clone, Debug)]
pub struct RunMode {
    train: bool,
    rng: DropoutRng,
}

impl RunMode {
    /// Inference: every dropout is the identity.
    pub fn eval() -> Self {
        Self {
            train: false,
            rng: DropoutRng::new(0),
        }
    }

    /// Training with dropout drawn from `rng`.
    pub fn train(rng: DropoutRng) -> Self {
        Self { train: true, rng }
    }

    /// Whether gradients and dropout are on.
    pub fn is_train(&self) -> bool {
        self.train
    }

    /// `nn.Dropout(p)` in this mode.
    pub fn dropout(&self, x: &Tensor, p: f64) -> Result<Tensor> {
        if !self.train || p <= 0.0 {
            return Ok(x.clone());
        }
        if p >= 1.0 {
            return Ok(x.zeros_like()?);
        }
        let n = x.elem_count();
        if n > MAX_MASK_ELEMENTS {
            return Err(Error::input(format!(
                "dropout over {n} elements exceeds the limit of {MAX_MASK_ELEMENTS}"
            )));
        }
        let stream = self.rng.next_stream();
        let keep = 1.0 - p;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..n as u64)
            .map(|i| {
                if uniform(stream, i) < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

/// A seeded source of dropout streams, shared by the clones of one model.
#[derive(Clone, Debug)]
pub struct DropoutRng {
    seed: u64,
    calls: Arc<AtomicU64>,
}

impl DropoutRng {
    /// A generator at the start of `seed`'s sequence.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The seed it was made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many dropout masks were drawn (with the seed, the state to resume from).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Acquire)
    }

    /// Continues a sequence after `calls` masks (a resumed run).
    pub fn resume(seed: u64, calls: u64) -> Self {
        Self {
            seed,
            calls: Arc::new(AtomicU64::new(calls)),
        }
    }

    fn next_stream(&self) -> u64 {
        let call = self.calls.fetch_add(1, Ordering::AcqRel);
        splitmix64(self.seed ^ splitmix64(call))
    }
}

/// A uniform value in [0, 1) for element `i` of `stream`.
fn uniform(stream: u64, i: u64) -> f64 {
    (splitmix64(stream.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))) >> 11) as f64
        / (1u64 << 53) as f64
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn keeps_the_expected_share_and_scales_it() {
        let x = Tensor::ones(200_000, candle_core::DType::F32, &Device::Cpu).unwrap();
        let mode = RunMode::train(DropoutRng::new(42));
        let y = mode.dropout(&x, 0.1).unwrap().to_vec1::<f32>().unwrap();
        let kept: Vec<f32> = y.iter().copied().filter(|&v| v != 0.0).collect();
        let rate = kept.len() as f64 / y.len() as f64;
        // Binomial(200000, 0.9): sd 0.00067; 5 sd.
        assert!((rate - 0.9).abs() < 0.0034, "keep rate {rate}");
        assert!(kept.iter().all(|&v| (v - 1.0 / 0.9).abs() < 1e-6));
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        assert!((mean - 1.0).abs() < 0.005, "mean {mean}");
    }

    #[test]
    fn same_seed_same_masks_and_eval_is_identity() {
        let x = Tensor::ones(1000, candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = RunMode::train(DropoutRng::new(7));
        let b = RunMode::train(DropoutRng::new(7));
        for _ in 0..3 {
            let ya = a.dropout(&x, 0.5).unwrap().to_vec1::<f32>().unwrap();
            let yb = b.dropout(&x, 0.5).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(ya, yb);
        }
        let first = RunMode::train(DropoutRng::new(7))
            .dropout(&x, 0.5)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let second = a.dropout(&x, 0.5).unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(first, second, "each call draws a new mask");
        let eval = RunMode::eval().dropout(&x, 0.5).unwrap();
        assert_eq!(eval.to_vec1::<f32>().unwrap(), vec![1.0; 1000]);
    }
}
