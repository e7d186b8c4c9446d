//! Helpers shared by the golden tests.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{safetensors, Device, Tensor};
use deberta::{
    DebertaV2Model, ForwardOptions, KernelOptions, Labels, LoadOptions, ModelInput, PathChoice,
};
use serde_json::Value;

/// The committed fixtures at the repository root.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Asserts `|got - expected| <= atol + rtol * |expected|` everywhere, prints and returns the max
/// absolute difference.
pub fn assert_close(label: &str, got: &Tensor, expected: &Tensor, atol: f32, rtol: f32) -> f32 {
    assert_eq!(got.dims(), expected.dims(), "{label}: shape");
    let g = got
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let e = expected
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut max_diff = 0f32;
    let mut worst = None;
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        let d = (a - b).abs();
        assert!(!d.is_nan(), "{label}: NaN at {i} (got {a}, expected {b})");
        if d > max_diff {
            max_diff = d;
        }
        if d > atol + rtol * b.abs() && worst.is_none() {
            worst = Some((i, *a, *b));
        }
    }
    println!("{label}: max |diff| = {max_diff:.3e}");
    if let Some((i, a, b)) = worst {
        panic!("{label}: element {i} got {a}, expected {b} (max |diff| {max_diff:.3e}, atol {atol}, rtol {rtol})");
    }
    max_diff
}

/// The largest `|a - b|` over two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A golden case's `input.json` / `<run>.input.json`, as the Python generators write it: named
/// as transformers' forward arguments, each a nested array of numbers (integers give an i64
/// tensor, any float an f32 one). The same format `deberta forward` reads; the CLI owns the
/// user-facing parser with its error messages, this reader only has to load trusted fixtures.
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

impl ForwardInputs {
    /// Reads a fixture input file.
    pub fn from_file(
        path: impl AsRef<std::path::Path>,
        device: &Device,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let path = path.as_ref();
        let value: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let field = |name: &str| -> Result<Option<Tensor>, Box<dyn std::error::Error>> {
            match value.get(name).filter(|v| !v.is_null()) {
                Some(v) => Ok(Some(deberta::tensor_json::tensor_from_json(
                    v, name, device,
                )?)),
                None => Ok(None),
            }
        };
        Ok(Self {
            input_ids: field("input_ids")?.ok_or("no input_ids")?,
            attention_mask: field("attention_mask")?,
            token_type_ids: field("token_type_ids")?,
            position_ids: field("position_ids")?,
            labels: field("labels")?,
            start_positions: field("start_positions")?,
            end_positions: field("end_positions")?,
        })
    }

    /// The model inputs (ids, masks, type and position ids).
    pub fn model_input(&self) -> ModelInput {
        ModelInput {
            input_ids: self.input_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            token_type_ids: self.token_type_ids.clone(),
            position_ids: self.position_ids.clone(),
        }
    }

    /// The labels, borrowed.
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            labels: self.labels.as_ref(),
            start_positions: self.start_positions.as_ref(),
            end_positions: self.end_positions.as_ref(),
        }
    }
}

pub const ATOL: f32 = 1e-4;
pub const RTOL: f32 = 1e-4;

/// Load options that run `path` (`CpuFused` or `Candle`).
pub fn on_path(path: PathChoice) -> LoadOptions {
    LoadOptions {
        kernels: KernelOptions {
            path,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The plan's path name `path` must give.
pub fn path_name(path: PathChoice) -> &'static str {
    match path {
        PathChoice::Candle => "candle",
        _ => "cpu-fused",
    }
}

/// Runs one `fixtures/models` case on the fused CPU path and compares every output tensor with
/// transformers'.
pub fn golden_model_case(name: &str) {
    golden_model_case_on(name, PathChoice::CpuFused)
}

/// Runs one `fixtures/models` case on `path` and compares every output tensor with
/// transformers'.
pub fn golden_model_case_on(name: &str, path: PathChoice) {
    golden_model_case_with(name, on_path(path))
}

/// Runs one `fixtures/models` case loaded with `options` and compares every output tensor with
/// transformers'.
pub fn golden_model_case_with(name: &str, options: LoadOptions) {
    let dir = fixtures_dir().join("models").join(name);
    let device = Device::Cpu;
    let (model, report) = DebertaV2Model::from_pretrained_with(&dir, &device, options).unwrap();
    if options.kernels.path != PathChoice::Auto {
        let want = path_name(options.kernels.path);
        assert_eq!(model.plan().path_name(), want, "{name}: path");
    }
    assert!(
        report.unexpected.is_empty() || name == "format_prefixed",
        "{name}: {:?}",
        report.unexpected
    );
    let inputs = ForwardInputs::from_file(dir.join("input.json"), &device).unwrap();
    let input = ModelInput {
        input_ids: inputs.input_ids,
        attention_mask: inputs.attention_mask,
        token_type_ids: inputs.token_type_ids,
        position_ids: inputs.position_ids,
    };
    let expected = safetensors::load(dir.join("expected.safetensors"), &device).unwrap();
    let want_attn = expected.keys().any(|k| k.starts_with("attentions."));
    let opts = ForwardOptions {
        output_hidden_states: true,
        output_attentions: want_attn,
    };
    let out = model.forward(&input, opts).unwrap();
    let mut worst = 0f32;
    let mut check = |key: &str, got: &candle_core::Tensor| {
        let exp = expected
            .get(key)
            .unwrap_or_else(|| panic!("{name}: no expected {key}"));
        worst = worst.max(assert_close(&format!("{name}/{key}"), got, exp, ATOL, RTOL));
    };
    check("last_hidden_state", &out.last_hidden_state);
    let hidden = out.hidden_states.unwrap();
    assert_eq!(hidden.len(), model.config().num_hidden_layers + 1);
    for (i, h) in hidden.iter().enumerate() {
        check(&format!("hidden_states.{i}"), h);
    }
    if want_attn {
        for (i, a) in out.attentions.unwrap().iter().enumerate() {
            check(&format!("attentions.{i}"), a);
        }
    }
    println!("{name}: worst max |diff| over all tensors = {worst:.3e}");
}

/// Runs every case `fixtures/models/manifest.json` lists loaded with `options` (for the tests
/// that repeat them all under another setting).
pub fn every_golden_model_case(options: LoadOptions) {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("models/manifest.json")).unwrap(),
    )
    .unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 24);
    for case in cases {
        golden_model_case_with(case["name"].as_str().unwrap(), options);
    }
}
