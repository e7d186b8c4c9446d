//! Tensors written as JSON: a rectangular nested array of numbers (or a single number), the
//! form `deberta forward`'s input files and the golden fixtures use. Integers give an i64
//! tensor, anything else f32.

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::{Error, Result};

/// `value` as a tensor; `name` is the field it came from, for errors (a ragged or non-numeric
/// array names the depth).
pub fn tensor_from_json(value: &Value, name: &str, device: &Device) -> Result<Tensor> {
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
    let tensor = if flat.iter().all(|n| n.is_i64()) {
        let ints: Vec<i64> = flat.iter().filter_map(|n| n.as_i64()).collect();
        Tensor::from_vec(ints, shape, device)
    } else {
        let floats: Vec<f32> = flat
            .iter()
            .filter_map(|n| n.as_f64())
            .map(|f| f as f32)
            .collect();
        Tensor::from_vec(floats, shape, device)
    };
    tensor.map_err(|e| Error::input(format!("`{name}`: {}", crate::error::candle_message(&e))))
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
            "`{name}` must be a rectangular array of numbers (ragged or non-numeric at depth \
             {depth})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_types_and_ragged_arrays() {
        let dev = Device::Cpu;
        let ids = tensor_from_json(&serde_json::json!([[1, 5, 2]]), "ids", &dev).unwrap();
        assert_eq!(
            (ids.dims(), ids.dtype()),
            (&[1, 3][..], candle_core::DType::I64)
        );
        let f = tensor_from_json(&serde_json::json!([0.5, 1]), "x", &dev).unwrap();
        assert_eq!(f.dtype(), candle_core::DType::F32);
        let err = tensor_from_json(&serde_json::json!([[1], [2, 3]]), "ids", &dev).unwrap_err();
        assert!(err.to_string().contains("rectangular"), "{err}");
    }
}
