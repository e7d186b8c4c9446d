//! A PyTorch-named state dict as the `tf_model.h5` of the matching `TFDebertaV2*` class.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/deberta_v2/modeling_tf_deberta_v2.py#L1345>
//! (the TF classes and their top-level layers) and `load_tf_weights_from_h5` in
//! `modeling_tf_utils.py`, which matches weights by name after the Keras model name.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::config::DebertaV2Config;
use crate::heads::HeadKind;
use crate::tf::{pt_to_tf, H5Layer, H5Weight, Layout};
use crate::{Error, Result};

/// The Keras model name and top-level layers (weightless dropouts included) of each TF class.
fn keras_layout(kind: HeadKind) -> (&'static str, &'static [&'static str]) {
    match kind {
        HeadKind::Base => ("tf_deberta_v2_model", &["deberta"]),
        HeadKind::MaskedLm => ("tf_deberta_v2_for_masked_lm", &["deberta", "cls"]),
        HeadKind::SequenceClassification => (
            "tf_deberta_v2_for_sequence_classification",
            &["deberta", "pooler", "cls_dropout", "classifier"],
        ),
        HeadKind::TokenClassification => (
            "tf_deberta_v2_for_token_classification",
            &["deberta", "dropout", "classifier"],
        ),
        HeadKind::QuestionAnswering => (
            "tf_deberta_v2_for_question_answering",
            &["deberta", "qa_outputs"],
        ),
        HeadKind::MultipleChoice => (
            "tf_deberta_v2_for_multiple_choice",
            &["deberta", "dropout", "pooler", "classifier"],
        ),
    }
}

/// The Keras layers holding `state`, or an error naming the weights TF has no place for.
pub fn to_layers(
    state: &BTreeMap<String, Tensor>,
    config: &DebertaV2Config,
    kind: HeadKind,
) -> Result<Vec<H5Layer>> {
    let (model_name, layer_names) = keras_layout(kind);
    let mut layers: Vec<H5Layer> = layer_names
        .iter()
        .map(|n| H5Layer {
            name: n.to_string(),
            weights: Vec::new(),
        })
        .collect();
    let mut unsupported = Vec::new();
    for (name, tensor) in state {
        let pt = match kind {
            HeadKind::Base => format!("deberta.{name}"),
            _ => name.clone(),
        };
        let Some((tf, layout)) = pt_to_tf(&pt) else {
            unsupported.push(name.clone());
            continue;
        };
        let top = tf.split('/').next().unwrap_or_default();
        let Some(layer) = layers.iter_mut().find(|l| l.name == top) else {
            unsupported.push(name.clone());
            continue;
        };
        let (shape, data) = tf_value(&pt, tensor, layout, config)?;
        layer.weights.push(H5Weight {
            name: format!("{model_name}/{tf}:0"),
            shape,
            data,
        });
    }
    if kind == HeadKind::MaskedLm {
        repeat_tied_embeddings(&mut layers);
    }
    if !unsupported.is_empty() {
        return Err(Error::input(format!(
            "TensorFlow's {} has no weights for {} (TF has only the legacy masked-LM head \
             `cls.predictions.*` with the decoder tied to the word embeddings)",
            kind.class_name(),
            unsupported.join(", ")
        )));
    }
    Ok(layers)
}

/// Keras lists the weights of the embeddings layer (whose matrix is the tied decoder) under
/// `cls` as well; written the same way for fidelity.
fn repeat_tied_embeddings(layers: &mut [H5Layer]) {
    let embeddings: Vec<H5Weight> = layers
        .iter()
        .filter(|l| l.name == "deberta")
        .flat_map(|l| l.weights.iter())
        .filter(|w| w.name.split('/').nth(2) == Some("embeddings"))
        .cloned()
        .collect();
    if let Some(cls) = layers.iter_mut().find(|l| l.name == "cls") {
        cls.weights.extend(embeddings);
    }
}

/// The TF shape and row-major values of one PyTorch tensor.
fn tf_value(
    pt_name: &str,
    tensor: &Tensor,
    layout: Layout,
    config: &DebertaV2Config,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let t = tensor.to_dtype(DType::F32)?;
    if pt_name.ends_with("position_embeddings.weight")
        && config.embedding_size() != config.hidden_size
    {
        return Err(Error::input(format!(
            "`{pt_name}`: TF keeps absolute positions as [max_position_embeddings, hidden_size] \
             and cannot add them to embeddings of embedding_size {} != hidden_size {}",
            config.embedding_size(),
            config.hidden_size
        )));
    }
    let t = match layout {
        Layout::Same => t,
        Layout::Transposed => t.t()?.contiguous()?,
        Layout::ConvKernel => return conv_kernel(pt_name, &t),
    };
    Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?))
}

/// PyTorch `[H_out, H_in / groups, k]` -> TF `[k, H_in, H_out]`, block-diagonal when
/// `groups > 1` (TF has no groups, and zeros outside the blocks compute the grouped conv).
fn conv_kernel(pt_name: &str, t: &Tensor) -> Result<(Vec<usize>, Vec<f32>)> {
    let &[h_out, per_group, k] = t.dims() else {
        return Err(Error::input(format!(
            "`{pt_name}`: conv weight of shape {:?} is not [H, H/groups, k]",
            t.dims()
        )));
    };
    let h_in = h_out;
    if per_group == 0 || h_in % per_group != 0 {
        return Err(Error::input(format!(
            "`{pt_name}`: {per_group} input channels per group do not divide {h_in}"
        )));
    }
    let groups = h_in / per_group;
    let w = t.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; k * h_in * h_out];
    for o in 0..h_out {
        let first = (o / (h_out / groups).max(1)) * per_group;
        for j in 0..per_group {
            for s in 0..k {
                let value = w.get((o * per_group + j) * k + s).copied().unwrap_or(0.0);
                if let Some(slot) = out.get_mut((s * h_in + first + j) * h_out + o) {
                    *slot = value;
                }
            }
        }
    }
    Ok((vec![k, h_in, h_out], out))
}
