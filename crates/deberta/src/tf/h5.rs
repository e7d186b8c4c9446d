//! The Keras HDF5 weights layout that `TFPreTrainedModel.save_pretrained` writes
//! (`model.save_weights("tf_model.h5")`), read and written with the pure-Rust `hdf5-pure`.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/modeling_tf_utils.py#L937>
//! (`load_tf_weights_from_h5`) and `load_attributes_from_hdf5_group` (same file).
//!
//! Layout: the root attribute `layer_names` lists the model's top-level layers (`deberta`,
//! `cls`, `pooler`, `classifier`, ...). Each has a group whose attribute `weight_names` lists
//! its weights by full Keras name (`tf_deberta_v2_model/deberta/embeddings/LayerNorm/gamma:0`),
//! and each weight is a dataset at `<layer>/<full name>`. Attributes over 64 KiB are split
//! into `weight_names0`, `weight_names1`, ... as Keras does.

use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, File, FileBuilder, GroupBuilder};

use crate::{Error, Result};

/// Keras splits an attribute bigger than this (HDF5's object header limit) into chunks.
const ATTRIBUTE_LIMIT: usize = 64512;

/// One weight as stored: full Keras name, shape, f32 values (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct H5Weight {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One top-level Keras layer and its weights, in the order of `weight_names`.
#[derive(Debug, Clone, PartialEq)]
pub struct H5Layer {
    pub name: String,
    pub weights: Vec<H5Weight>,
}

/// An opened `tf_model.h5`: the layer/weight index, with values read on demand.
pub struct KerasH5 {
    path: PathBuf,
    file: File,
    /// (layer, full weight name, dataset path, shape)
    entries: Vec<(String, String, String, Vec<usize>)>,
}

fn file_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::weight_file(path, what)
}

/// Reads a string-list attribute, joined over Keras' chunks; `None` when absent.
fn string_list(
    path: &Path,
    attrs: &std::collections::HashMap<String, AttrValue>,
    name: &str,
    owner: &str,
) -> Result<Option<Vec<String>>> {
    if let Some(value) = attrs.get(name) {
        return strings_of(value).map(Some).ok_or_else(|| {
            file_error(
                path,
                format!("{owner}: attribute `{name}` is not a list of strings"),
            )
        });
    }
    let mut out = Vec::new();
    let mut chunk = 0;
    while let Some(value) = attrs.get(&format!("{name}{chunk}")) {
        let part = strings_of(value).ok_or_else(|| {
            file_error(
                path,
                format!("{owner}: attribute `{name}{chunk}` is not a list of strings"),
            )
        })?;
        out.extend(part);
        chunk += 1;
    }
    Ok((chunk > 0).then_some(out))
}

fn strings_of(value: &AttrValue) -> Option<Vec<String>> {
    match value {
        AttrValue::StringArray(v) | AttrValue::AsciiStringArray(v) => Some(v.clone()),
        AttrValue::VarLenAsciiStringArray(v) | AttrValue::VarLenStringArray(v) => Some(v.clone()),
        AttrValue::String(s)
        | AttrValue::AsciiString(s)
        | AttrValue::VarLenAsciiString(s)
        | AttrValue::VarLenString(s) => Some(vec![s.clone()]),
        AttrValue::StringArraySized { values, .. }
        | AttrValue::AsciiStringArraySized { values, .. } => Some(values.clone()),
        // Keras writes an empty `weight_names` for weightless layers as an empty float array.
        AttrValue::F64Array(v) if v.is_empty() => Some(Vec::new()),
        AttrValue::F32Array(v) if v.is_empty() => Some(Vec::new()),
        _ => None,
    }
}

impl KerasH5 {
    /// Opens a Keras weights file and indexes every layer's weights.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|e| file_error(path, format!("not a readable HDF5 file: {e}")))?;
        let root_attrs = file
            .root()
            .attrs()
            .map_err(|e| file_error(path, format!("root attributes: {e}")))?;
        let layers =
            string_list(path, &root_attrs, "layer_names", "root group")?.ok_or_else(|| {
                file_error(
                    path,
                    "no `layer_names` attribute: not a Keras weights file (tf_model.h5)",
                )
            })?;
        let mut entries = Vec::new();
        // A shard of a sharded checkpoint (`save_pretrained(max_shard_size=...)`) lists datasets,
        // named by the weight without the model name, instead of layer groups.
        let sharded = layers.first().is_some_and(|n| file.dataset(n).is_ok());
        for layer in layers {
            if sharded {
                entries.push(index_shard_dataset(path, &file, &layer)?);
            } else {
                entries.extend(index_layer(path, &file, &layer)?);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// (layer, full Keras weight name, shape) of every weight.
    pub fn weights(&self) -> impl Iterator<Item = (&str, &str, &[usize])> {
        self.entries
            .iter()
            .map(|(l, n, _, s)| (l.as_str(), n.as_str(), s.as_slice()))
    }

    /// Reads one weight (by full Keras name) as f32 values.
    pub fn read(&self, weight_name: &str) -> Result<Vec<f32>> {
        let (layer, _, dataset, shape) = self
            .entries
            .iter()
            .find(|e| e.1 == weight_name)
            .ok_or_else(|| file_error(&self.path, format!("no weight `{weight_name}`")))?;
        let where_ = || format!("layer group `{layer}`, dataset `{dataset}`");
        let ds = self
            .file
            .dataset(dataset)
            .map_err(|e| file_error(&self.path, format!("{}: {e}", where_())))?;
        let values = ds
            .read_f32()
            .map_err(|e| file_error(&self.path, format!("{}: {e}", where_())))?;
        let numel: usize = shape.iter().product();
        if values.len() != numel {
            return Err(file_error(
                &self.path,
                format!("{}: {} values for shape {shape:?}", where_(), values.len()),
            ));
        }
        Ok(values)
    }

    /// Reads every layer and weight.
    pub fn read_all(&self) -> Result<Vec<H5Layer>> {
        let mut layers: Vec<H5Layer> = Vec::new();
        for (layer, name, _, shape) in &self.entries {
            let weight = H5Weight {
                name: name.clone(),
                shape: shape.clone(),
                data: self.read(name)?,
            };
            match layers.last_mut() {
                Some(last) if &last.name == layer => last.weights.push(weight),
                _ => layers.push(H5Layer {
                    name: layer.clone(),
                    weights: vec![weight],
                }),
            }
        }
        Ok(layers)
    }
}

type Entry = (String, String, String, Vec<usize>);

/// A weight of a shard file: the dataset `name` (`deberta/embeddings/.../weight:0`), presented
/// like a Keras weight of layer `deberta` named `<model>/deberta/embeddings/.../weight:0`.
fn index_shard_dataset(path: &Path, file: &File, name: &str) -> Result<Entry> {
    let ds = file.dataset(name).map_err(|e| {
        file_error(
            path,
            format!("dataset `{name}` (listed in layer_names) cannot be opened: {e}"),
        )
    })?;
    let shape = ds
        .shape()
        .map_err(|e| file_error(path, format!("dataset `{name}`: {e}")))?
        .into_iter()
        .map(|d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    let layer = name.split('/').next().unwrap_or(name).to_string();
    Ok((layer, format!("model/{name}"), name.to_string(), shape))
}

/// Writes `weights` (full Keras names) as one shard of a sharded TF checkpoint, laid out as
/// transformers' TF `save_pretrained(max_shard_size=...)` writes it: one dataset per weight at
/// its name without the model name, listed in the root attribute `layer_names`.
pub fn write_shard(path: impl AsRef<Path>, weights: &[H5Weight]) -> Result<()> {
    let path = path.as_ref();
    let names: Vec<String> = weights
        .iter()
        .map(|w| {
            w.name
                .split_once('/')
                .map_or(w.name.as_str(), |(_, r)| r)
                .to_string()
        })
        .collect();
    let mut builder = FileBuilder::new();
    set_string_list(|n, v| builder.set_attr(n, v), "layer_names", &names);
    let mut tree = Tree::default();
    for (weight, name) in weights.iter().zip(&names) {
        tree.insert(name, weight);
    }
    if let Some((name, _)) = tree.datasets.first() {
        return Err(file_error(
            path,
            format!("weight `{name}` is not inside a layer"),
        ));
    }
    for (name, sub) in &tree.groups {
        let mut group = builder.create_group(name);
        sub.write_into(&mut group)?;
        builder.add_group(group.finish());
    }
    builder
        .write(path)
        .map_err(|e| file_error(path, format!("writing HDF5: {e}")))
}

fn index_layer(path: &Path, file: &File, layer: &str) -> Result<Vec<Entry>> {
    let group = file.group(layer).map_err(|e| {
        file_error(
            path,
            format!("layer group `{layer}` (listed in layer_names) cannot be opened: {e}"),
        )
    })?;
    let attrs = group
        .attrs()
        .map_err(|e| file_error(path, format!("layer group `{layer}`: attributes: {e}")))?;
    let owner = format!("layer group `{layer}`");
    let names = string_list(path, &attrs, "weight_names", &owner)?.unwrap_or_default();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let dataset = format!("{layer}/{name}");
        let ds = file.dataset(&dataset).map_err(|e| {
            file_error(
                path,
                format!("{owner}: weight `{name}` is listed but its dataset is missing: {e}"),
            )
        })?;
        let shape = ds
            .shape()
            .map_err(|e| file_error(path, format!("{owner}: dataset `{name}`: {e}")))?
            .into_iter()
            .map(|d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect();
        out.push((layer.to_string(), name, dataset, shape));
    }
    Ok(out)
}

/// Writes layers as Keras' `save_weights` lays them out (`tf_model.h5`).
pub fn write(path: impl AsRef<Path>, layers: &[H5Layer]) -> Result<()> {
    let path = path.as_ref();
    let mut builder = FileBuilder::new();
    let names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    set_string_list(|n, v| builder.set_attr(n, v), "layer_names", &names);
    builder.set_attr("backend", AttrValue::String("tensorflow".into()));
    builder.set_attr("keras_version", AttrValue::String("2.20.1".into()));
    for layer in layers {
        let mut group = builder.create_group(&layer.name);
        let weight_names: Vec<String> = layer.weights.iter().map(|w| w.name.clone()).collect();
        if !weight_names.is_empty() {
            set_string_list(
                |n, v| {
                    group.set_attr(n, v);
                },
                "weight_names",
                &weight_names,
            );
        }
        let mut tree = Tree::default();
        for w in &layer.weights {
            tree.insert(&w.name, w);
        }
        tree.write_into(&mut group)?;
        builder.add_group(group.finish());
    }
    builder
        .write(path)
        .map_err(|e| file_error(path, format!("writing HDF5: {e}")))
}

/// Sets a string-list attribute, split into `name0`, `name1`, ... when too big (Keras).
fn set_string_list(mut set: impl FnMut(&str, AttrValue), name: &str, values: &[String]) {
    let width = values.iter().map(String::len).max().unwrap_or(1).max(1);
    let per_chunk = (ATTRIBUTE_LIMIT / width).max(1);
    if values.len() <= per_chunk {
        set(name, AttrValue::StringArray(values.to_vec()));
        return;
    }
    for (i, chunk) in values.chunks(per_chunk).enumerate() {
        set(
            &format!("{name}{i}"),
            AttrValue::StringArray(chunk.to_vec()),
        );
    }
}

/// Datasets by path, nested into groups for the builder.
#[derive(Default)]
struct Tree<'a> {
    groups: Vec<(String, Tree<'a>)>,
    datasets: Vec<(String, &'a H5Weight)>,
}

impl<'a> Tree<'a> {
    fn insert(&mut self, path: &str, weight: &'a H5Weight) {
        match path.split_once('/') {
            None => self.datasets.push((path.to_string(), weight)),
            Some((head, rest)) => {
                let pos = match self.groups.iter().position(|(n, _)| n == head) {
                    Some(p) => p,
                    None => {
                        self.groups.push((head.to_string(), Tree::default()));
                        self.groups.len() - 1
                    }
                };
                if let Some((_, sub)) = self.groups.get_mut(pos) {
                    sub.insert(rest, weight);
                }
            }
        }
    }

    fn write_into(&self, group: &mut GroupBuilder) -> Result<()> {
        for (name, weight) in &self.datasets {
            let shape: Vec<u64> = weight.shape.iter().map(|&d| d as u64).collect();
            group
                .create_dataset(name)
                .with_f32_data(&weight.data)
                .with_shape(&shape);
        }
        for (name, sub) in &self.groups {
            let mut child = group.create_group(name);
            sub.write_into(&mut child)?;
            group.add_group(child.finish());
        }
        Ok(())
    }
}
