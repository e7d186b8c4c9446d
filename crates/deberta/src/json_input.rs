//! The JSON input of `deberta forward`: nested arrays named as transformers' forward arguments.
//!
//! ```json
//! {"input_ids": [[1, 5, 2]], "attention_mask": [[1, 1, 1]], "labels": [0]}
//! ```
//! Integer arrays become i64 tensors, arrays with any non-integer number become f32 tensors.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// Every field `deberta forward` reads; all but `input_ids` optional.
#[derive(Debug, Clone)]
pub struct ForwardInputs {
    pub input_ids: Tensor,
    pub attention_mask: Option<Tensor>,
    pub token_type_ids: Option<Tensor>,
    pub position_ids: Option<Tensor>,
    pub labels: Option<Tensor>,
    pub start_positions: Option<Tensor>,
    pub end_positions: Option<Tensor>,
}

const KNOWN: [&str; 7] = [
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "labels",
    "start_positions",
    "end_positions",
];

impl ForwardInputs {
    /// Reads an input file.
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, device).map_err(|e| match e {
            Error::Input(msg) => Error::Input(format!("{}: {msg}", path.display())),
            Error::Json { source, .. } => Error::Json {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Parses input JSON text.
    pub fn from_json_str(text: &str, device: &Device) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Json {
            path: "input".into(),
            source: e,
        })?;
        let Value::Object(map) = value else {
            return Err(Error::input("the input must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(Error::input(format!(
                "unknown input field `{unknown}` (expected one of {})",
                KNOWN.join(", ")
            )));
        }
        let get = |name: &str| -> Result<Option<Tensor>> {
            map_field(&map, name)
                .map(|v| nested_to_tensor(v, name, device))
                .transpose()
        };
        Ok(Self {
            input_ids: get("input_ids")?.ok_or_else(|| Error::input("`input_ids` is required"))?,
            attention_mask: get("attention_mask")?,
            token_type_ids: get("token_type_ids")?,
            position_ids: get("position_ids")?,
            labels: get("labels")?,
            start_positions: get("start_positions")?,
            end_positions: get("end_positions")?,
        })
    }
}

impl ForwardInputs {
    /// The model inputs (ids, masks, type and position ids).
    pub fn model_input(&self) -> crate::ModelInput {
        crate::ModelInput {
            input_ids: self.input_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            token_type_ids: self.token_type_ids.clone(),
            position_ids: self.position_ids.clone(),
        }
    }

    /// The labels, borrowed.
    pub fn labels(&self) -> crate::Labels<'_> {
        crate::Labels {
            labels: self.labels.as_ref(),
            start_positions: self.start_positions.as_ref(),
            end_positions: self.end_positions.as_ref(),
        }
    }
}

fn map_field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).filter(|v| !v.is_null())
}

/// A rectangular nested array of numbers (or a single number) -> tensor.
pub fn nested_to_tensor(value: &Value, name: &str, device: &Device) -> Result<Tensor> {
    let mut shape = Vec::new();
    let mut cursor = value;
    while let Value::Array(items) = cursor {
        shape.push(items.len());
        match items.first() {
            Some(first) => cursor = first,
            None => break,
        }
    }
    let mut flat = Vec::new();
    flatten(value, &shape, 0, name, &mut flat)?;
    if flat.iter().all(|n| n.is_i64()) {
        let ints: Vec<i64> = flat.iter().filter_map(|n| n.as_i64()).collect();
        Ok(Tensor::from_vec(ints, shape, device)?)
    } else {
        let floats: Vec<f32> = flat
            .iter()
            .filter_map(|n| n.as_f64())
            .map(|f| f as f32)
            .collect();
        Ok(Tensor::from_vec(floats, shape, device)?)
    }
}

fn flatten<'a>(
    value: &'a Value,
    shape: &[usize],
    depth: usize,
    name: &str,
    out: &mut Vec<&'a serde_json::Number>,
) -> Result<()> {
    match (value, shape.get(depth)) {
        (Value::Array(items), Some(&len)) if items.len() == len => {
            for item in items {
                flatten(item, shape, depth + 1, name, out)?;
            }
            Ok(())
        }
        (Value::Number(n), None) => {
            out.push(n);
            Ok(())
        }
        _ => Err(Error::input(format!(
            "`{name}` must be a rectangular array of numbers (ragged or non-numeric at depth {depth})"
        ))),
    }
}
