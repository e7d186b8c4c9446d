//! The JSON input of `deberta forward`: nested arrays named as transformers' forward arguments.
//!
//! ```json
//! {"input_ids": [[1, 5, 2]], "attention_mask": [[1, 1, 1]], "labels": [0]}
//! ```
//! Integer arrays become i64 tensors, arrays with any non-integer number become f32 tensors.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde_json::{Map, Value};

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
    /// Reads an input file; errors name it.
    pub fn from_file(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json_str(&text, device).with_context(|| format!("input {}", path.display()))
    }

    /// Parses input JSON text.
    pub fn from_json_str(text: &str, device: &Device) -> Result<Self> {
        let value: Value = serde_json::from_str(text).context("invalid JSON")?;
        let Value::Object(map) = value else {
            bail!("the input must be a JSON object");
        };
        if let Some(unknown) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            bail!(
                "unknown input field `{unknown}` (expected one of {})",
                KNOWN.join(", ")
            );
        }
        let get = |name: &str| -> Result<Option<Tensor>> {
            map_field(&map, name)
                .map(|v| nested_to_tensor(v, name, device))
                .transpose()
        };
        Ok(Self {
            input_ids: get("input_ids")?.context("`input_ids` is required")?,
            attention_mask: get("attention_mask")?,
            token_type_ids: get("token_type_ids")?,
            position_ids: get("position_ids")?,
            labels: get("labels")?,
            start_positions: get("start_positions")?,
            end_positions: get("end_positions")?,
        })
    }

    /// The model inputs (ids, masks, type and position ids).
    pub fn model_input(&self) -> deberta::ModelInput {
        deberta::ModelInput {
            input_ids: self.input_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            token_type_ids: self.token_type_ids.clone(),
            position_ids: self.position_ids.clone(),
        }
    }

    /// The labels, borrowed.
    pub fn labels(&self) -> deberta::Labels<'_> {
        deberta::Labels {
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
fn nested_to_tensor(value: &Value, name: &str, device: &Device) -> Result<Tensor> {
    Ok(deberta::tensor_json::tensor_from_json(value, name, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_types_and_errors() {
        let dev = Device::Cpu;
        let ok = ForwardInputs::from_json_str(
            r#"{"input_ids": [[1, 5, 2]], "labels": [[0.5, 1]], "position_ids": null}"#,
            &dev,
        )
        .unwrap();
        assert_eq!(ok.input_ids.dims(), [1, 3]);
        assert_eq!(ok.input_ids.dtype(), candle_core::DType::I64);
        let labels = ok.labels.unwrap();
        assert_eq!(labels.dtype(), candle_core::DType::F32);
        assert!(ok.position_ids.is_none());
        let err = |text: &str| {
            format!(
                "{:#}",
                ForwardInputs::from_json_str(text, &dev).unwrap_err()
            )
        };
        assert!(err(r#"{"input_ids": [[1], [2, 3]]}"#).contains("rectangular"));
        assert!(err(r#"{"input_ids": [[1]], "mask": 1}"#).contains("unknown input field `mask`"));
        assert!(err(r#"{"attention_mask": [[1]]}"#).contains("`input_ids` is required"));
        assert!(err("[1]").contains("JSON object"));
        assert!(err("{").starts_with("invalid JSON: "));
    }
}
