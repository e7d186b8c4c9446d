//! TensorFlow checkpoints (`tf_model.h5` of transformers' `TFDebertaV2*` classes, ≤ 4.57).
//!
//! [`TfWeights`] presents a Keras weights file under PyTorch names and layouts, so the model and
//! head code load it like any other checkpoint: Dense kernels are transposed, the conv kernel is
//! permuted, LayerNorm `gamma`/`beta` become `weight`/`bias` (see [`names`]).
//!
//! TF ignores `conv_groups` and always stores a full `[k, H, H]` conv kernel. For a config with
//! `conv_groups > 1` we take the diagonal blocks when every weight outside them is zero (then TF
//! and the grouped PyTorch conv compute the same thing) and otherwise refuse the checkpoint,
//! since no grouped conv computes what that TF model computes. TF's absolute position table is
//! `[max_position_embeddings, hidden_size]`; with `embedding_size != hidden_size` TF's own model
//! cannot add it, and the loader reports the shape mismatch. A weight listed by two layer
//! groups (Keras repeats the embeddings tied to the MLM decoder under `cls`) is read from the
//! first.

pub mod h5;
pub mod names;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};
pub use h5::{write_shard, H5Layer, H5Weight, KerasH5};
pub use names::{pt_to_tf, tf_to_pt, Layout};

/// Where a PyTorch-named tensor lives in the Keras file.
#[derive(Debug, Clone)]
struct TfEntry {
    layer: String,
    keras_name: String,
    layout: Layout,
    stored: Vec<usize>,
    shape: Vec<usize>,
}

/// A `tf_model.h5` indexed by PyTorch names.
pub struct TfWeights {
    h5: KerasH5,
    entries: BTreeMap<String, TfEntry>,
}

/// The PyTorch shape of a tensor stored with `layout` as `stored`.
fn pt_shape(layout: Layout, stored: &[usize]) -> Option<Vec<usize>> {
    match (layout, stored) {
        (Layout::Same, s) => Some(s.to_vec()),
        (Layout::Transposed, [i, o]) => Some(vec![*o, *i]),
        (Layout::ConvKernel, [k, i, o]) => Some(vec![*o, *i, *k]),
        _ => None,
    }
}

impl TfWeights {
    /// Opens `tf_model.h5` and maps every weight name to its PyTorch name.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let h5 = KerasH5::open(path)?;
        let mut entries: BTreeMap<String, TfEntry> = BTreeMap::new();
        for (layer, keras_name, stored) in h5.weights() {
            // Keras names start with the model's name (`tf_deberta_v2_model/...`).
            let local = keras_name
                .split_once('/')
                .map_or(keras_name, |(_, rest)| rest);
            let (pt, layout) = tf_to_pt(local).unwrap_or_else(|| (local.to_string(), Layout::Same));
            let shape = pt_shape(layout, stored).ok_or_else(|| {
                Error::weight_file(
                    h5.path(),
                    format!(
                        "layer group `{layer}`: weight `{keras_name}` has shape {stored:?}, \
                         which is not a {layout:?} kernel"
                    ),
                )
            })?;
            let entry = TfEntry {
                layer: layer.to_string(),
                keras_name: keras_name.to_string(),
                layout,
                stored: stored.to_vec(),
                shape,
            };
            match entries.get(&pt) {
                // Keras lists the embeddings tied to the MLM decoder again under `cls`.
                Some(first)
                    if first.keras_name == entry.keras_name && first.stored == entry.stored => {}
                Some(first) => {
                    return Err(Error::weight_file(
                        h5.path(),
                        format!(
                            "weights `{}` and `{keras_name}` both map to `{pt}`",
                            first.keras_name
                        ),
                    ))
                }
                None => {
                    entries.insert(pt, entry);
                }
            }
        }
        Ok(Self { h5, entries })
    }

    /// (PyTorch name, PyTorch shape) of every weight.
    pub fn names(&self) -> Vec<(String, Vec<usize>)> {
        self.entries
            .iter()
            .map(|(n, e)| (n.clone(), e.shape.clone()))
            .collect()
    }

    /// The Keras weight name and layer group of a PyTorch name, for messages.
    pub fn describe(&self, pt_name: &str) -> Option<String> {
        self.entries
            .get(pt_name)
            .map(|e| format!("`{}` in layer group `{}`", e.keras_name, e.layer))
    }

    /// Loads `pt_name` as f32 in PyTorch layout, checking it against `shape`.
    pub fn load(&self, pt_name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let entry = self
            .entries
            .get(pt_name)
            .ok_or_else(|| Error::MissingWeight {
                name: pt_name.to_string(),
                source_desc: self.h5.path().display().to_string(),
            })?;
        let data = self.h5.read(&entry.keras_name)?;
        if entry.shape == shape {
            let t = Tensor::from_vec(data, entry.stored.as_slice(), device)?;
            return Ok(match entry.layout {
                Layout::Same => t,
                Layout::Transposed => t.t()?.contiguous()?,
                Layout::ConvKernel => t.permute((2, 1, 0))?.contiguous()?,
            });
        }
        if entry.layout == Layout::ConvKernel {
            if let Some(grouped) = self.grouped_conv(entry, &data, shape)? {
                return Ok(Tensor::from_vec(grouped, shape, device)?);
            }
        }
        Err(self.shape_error(pt_name, entry, shape))
    }

    fn shape_error(&self, pt_name: &str, entry: &TfEntry, shape: &[usize]) -> Error {
        let mut reason = format!(
            "layer group `{}`: weight `{}` (PyTorch `{pt_name}`) is stored as {:?}, i.e. {:?} in \
             PyTorch layout, but the config requires {shape:?}",
            entry.layer, entry.keras_name, entry.stored, entry.shape
        );
        if pt_name.ends_with("position_embeddings.weight") {
            reason.push_str(
                " (TF keeps absolute positions as [max_position_embeddings, hidden_size], so a \
                 TF model with embedding_size != hidden_size cannot use them either)",
            );
        }
        Error::weight_file(self.h5.path(), reason)
    }

    /// The diagonal blocks `[H_out, H_in / groups, k]` of a full TF conv kernel
    /// `[k, H_in, H_out]`, or an error when weights outside them are not zero.
    fn grouped_conv(
        &self,
        entry: &TfEntry,
        data: &[f32],
        shape: &[usize],
    ) -> Result<Option<Vec<f32>>> {
        let (&[k, h_in, h_out], &[o2, per_group, k2]) = (entry.stored.as_slice(), shape) else {
            return Ok(None);
        };
        if o2 != h_out || k2 != k || per_group == 0 || h_in % per_group != 0 || per_group == h_in {
            return Ok(None);
        }
        let groups = h_in / per_group;
        let at = |t: usize, i: usize, o: usize| data.get((t * h_in + i) * h_out + o).copied();
        let mut out = Vec::with_capacity(h_out * per_group * k);
        for o in 0..h_out {
            let first = (o / (h_out / groups).max(1)) * per_group;
            for j in 0..per_group {
                for t in 0..k {
                    out.push(at(t, first + j, o).unwrap_or(0.0));
                }
            }
            for t in 0..k {
                for i in (0..h_in).filter(|i| !(first..first + per_group).contains(i)) {
                    if at(t, i, o).is_some_and(|v| v != 0.0) {
                        return Err(Error::weight_file(
                            self.h5.path(),
                            format!(
                                "layer group `{}`: weight `{}` is a full conv kernel with weights \
                                 outside the {groups} diagonal blocks of conv_groups={groups}. TF \
                                 ignores conv_groups, so this model computes a full convolution; \
                                 set \"conv_groups\": 1 in config.json to run it as TF does",
                                entry.layer, entry.keras_name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(Some(out))
    }
}
