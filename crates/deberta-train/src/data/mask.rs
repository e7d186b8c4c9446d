//! Dynamic masking for masked LM (`DataCollatorForLanguageModeling`), as a pure function of
//! `(seed, step, feature, position)` so that a resumed run masks exactly as an uninterrupted
//! one: every random draw is SplitMix64 of a key mixed from those four numbers and a stream
//! number, with no generator state carried between batches.

use deberta::DebertaV2Config;
use deberta_tokenizer::Tokenizer;

use super::encode::IGNORE;
use super::{DataOptions, MlmSettings, Sequence};
use crate::{Error, Result};

/// What masked-LM masking of a batch depends on: the run's seed and the optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaskingSeed {
    pub seed: u64,
    pub step: u64,
}

pub(crate) fn settings(
    tokenizer: &Tokenizer,
    config: &DebertaV2Config,
    opts: &DataOptions,
) -> Result<MlmSettings> {
    let mask = &tokenizer.config().special.mask;
    let mask_id = tokenizer
        .token_to_id(mask)
        .ok_or_else(|| Error::invalid(format!("the tokenizer has no mask token `{mask}`")))?;
    // `len(tokenizer)`: transformers draws random replacements from it.
    let tokenizer_len = match tokenizer {
        Tokenizer::Slow(t) => t.len_with_added(),
        Tokenizer::Fast(t) => t.vocab_size(),
    };
    let vocab_len = tokenizer_len.min(config.vocab_size);
    if vocab_len == 0 || mask_id as usize >= config.vocab_size {
        return Err(Error::invalid(format!(
            "the mask token id {mask_id} is outside the model's vocab_size {}",
            config.vocab_size
        )));
    }
    Ok(MlmSettings {
        mask_id,
        vocab_len: u32::try_from(vocab_len).unwrap_or(u32::MAX),
        probability: opts.mlm_probability,
    })
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit draw for `(seed, step, feature, position, stream)`.
fn draw(m: MaskingSeed, feature: usize, position: usize, stream: u64) -> u64 {
    let mut h = mix(m.seed);
    h = mix(h ^ m.step);
    h = mix(h ^ feature as u64);
    h = mix(h ^ position as u64);
    mix(h ^ stream)
}

/// A uniform draw in `[0, 1)`.
fn unit(m: MaskingSeed, feature: usize, position: usize, stream: u64) -> f64 {
    (draw(m, feature, position, stream) >> 11) as f64 / (1u64 << 53) as f64
}

/// Masks one sequence of feature `feature`: each non-special token is selected with
/// `probability`; labels are the original ids at selected positions and -100 elsewhere; a
/// selected token becomes `[MASK]` with probability 0.8, a random id in `0..vocab_len` with
/// 0.1, and stays with 0.1. Returns `(input_ids, labels)`.
pub(crate) fn mask_sequence(
    seq: &Sequence,
    settings: &MlmSettings,
    m: MaskingSeed,
    feature: usize,
) -> (Vec<u32>, Vec<i64>) {
    let mut ids = seq.input_ids.clone();
    let mut labels = vec![IGNORE; ids.len()];
    for (j, (id, label)) in ids.iter_mut().zip(labels.iter_mut()).enumerate() {
        if seq.special_tokens_mask.get(j) == Some(&1) {
            continue;
        }
        if unit(m, feature, j, 0) >= settings.probability {
            continue;
        }
        *label = i64::from(*id);
        if unit(m, feature, j, 1) < 0.8 {
            *id = settings.mask_id;
        } else if unit(m, feature, j, 2) < 0.5 {
            *id = (draw(m, feature, j, 3) % u64::from(settings.vocab_len.max(1))) as u32;
        }
    }
    (ids, labels)
}
