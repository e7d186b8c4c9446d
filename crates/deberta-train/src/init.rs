//! Seeded initialisation of the parameters a load had to create (a new head, or every
//! parameter with `--from-scratch`), as transformers' `_init_weights` for DeBERTa-v2:
//! normal(0, `initializer_range`) for matrices and embeddings (the padding row of the word
//! embeddings zeroed), zeros for biases, ones for LayerNorm weights. candle's `randn` is not
//! seeded, so a run would not be reproducible from `--seed` without this.

use candle_core::Tensor;
use deberta::TaskModel;

use crate::rng::SplitMix;
use crate::Result;

/// Re-initialises every parameter the load reported as initialised, from `seed`.
pub fn reinitialise_new_parameters(model: &TaskModel, seed: u64) -> Result<usize> {
    let config = model.config();
    let std = config.initializer_range;
    let pad = config.pad_token_id.and_then(|p| usize::try_from(p).ok());
    let names = model.report().initialized.clone();
    for (index, name) in names.iter().enumerate() {
        let Some(param) = model.parameters().get(name) else {
            continue;
        };
        let value = param.value();
        let dims = value.dims().to_vec();
        let n = value.elem_count();
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; n]
        } else if dims.len() == 1 {
            vec![1.0; n]
        } else {
            let mut rng = SplitMix::new(seed ^ 0x1A17_0000 ^ (index as u64).wrapping_mul(0x9E37));
            let mut v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
            if name.ends_with("word_embeddings.weight") {
                if let (Some(p), [_, width]) = (pad, dims.as_slice()) {
                    if let Some(row) = v.get_mut(p * width..(p + 1) * width) {
                        row.fill(0.0);
                    }
                }
            }
            v
        };
        let t = Tensor::from_vec(values, dims, value.device())?;
        model.parameters().set(name, &t)?;
    }
    Ok(names.len())
}
