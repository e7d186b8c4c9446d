//! Every bad-input class gives a clear error (never a panic) that names the file, tensor or field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{safetensors, Device, Tensor};
use deberta::{DebertaV2Model, Error, ForwardOptions, ModelInput};

/// A scratch copy of a fixture checkpoint (config + weights only).
fn scratch(case: &str) -> (tempfile::TempDir, PathBuf) {
    let src = common::fixtures_dir().join("models").join(case);
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.starts_with("expected") && name != "input.json" {
            std::fs::copy(&path, tmp.path().join(&name)).unwrap();
        }
    }
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

fn load_err(dir: &Path) -> Error {
    match DebertaV2Model::from_pretrained(dir, &Device::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => {
            println!("error: {e}");
            e
        }
    }
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    safetensors::save(&tensors, &path).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
}

#[test]
fn missing_config_names_the_directory() {
    let (_t, dir) = scratch("v3_buckets");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, Error::MissingFile { .. }) && e.to_string().contains("config.json"));
}

#[test]
fn malformed_config_names_the_file() {
    let (_t, dir) = scratch("v3_buckets");
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 32,").unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, Error::Json { .. }) && e.to_string().contains("config.json"));
}

#[test]
fn inconsistent_config_names_the_field() {
    let (_t, dir) = scratch("v3_buckets");
    edit_config(&dir, |c| c["num_attention_heads"] = 5.into());
    let e = load_err(&dir);
    assert!(
        matches!(&e, Error::Config { field, .. } if field == "num_attention_heads"),
        "{e}"
    );
}

#[test]
fn unknown_activation_is_a_config_error() {
    let (_t, dir) = scratch("v3_buckets");
    edit_config(&dir, |c| c["hidden_act"] = "gelu_quantum".into());
    let e = load_err(&dir);
    assert!(
        matches!(&e, Error::Config { field, .. } if field == "hidden_act"),
        "{e}"
    );
    assert!(e.to_string().contains("gelu_quantum"), "{e}");
}

#[test]
fn wrongly_typed_field_is_a_config_error() {
    let (_t, dir) = scratch("v3_buckets");
    edit_config(&dir, |c| c["hidden_size"] = "big".into());
    let e = load_err(&dir);
    assert!(
        matches!(&e, Error::Config { field, .. } if field == "hidden_size"),
        "{e}"
    );
}

#[test]
fn missing_weights_file_lists_what_was_looked_for() {
    let (_t, dir) = scratch("v3_buckets");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = load_err(&dir);
    assert!(
        matches!(e, Error::MissingFile { .. }) && e.to_string().contains("pytorch_model.bin"),
        "{e}"
    );
}

#[test]
fn truncated_safetensors_is_a_weight_file_error() {
    let (_t, dir) = scratch("v3_buckets");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&dir);
    assert!(
        matches!(e, Error::WeightFile { .. }) && e.to_string().contains("model.safetensors"),
        "{e}"
    );
}

#[test]
fn garbage_safetensors_is_a_weight_file_error() {
    let (_t, dir) = scratch("v3_buckets");
    std::fs::write(
        dir.join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header",
    )
    .unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, Error::WeightFile { .. }), "{e}");
}

#[test]
fn truncated_pytorch_bin_is_a_weight_file_error() {
    let (_t, dir) = scratch("format_pytorch_bin");
    let path = dir.join("pytorch_model.bin");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [bytes.len() / 3, bytes.len() - 100] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = load_err(&dir);
        assert!(
            matches!(e, Error::WeightFile { .. }) && e.to_string().contains("pytorch_model.bin"),
            "{e}"
        );
    }
}

#[test]
fn missing_shard_names_the_shard() {
    let (_t, dir) = scratch("format_sharded");
    std::fs::remove_file(dir.join("model-00002-of-00005.safetensors")).unwrap();
    let e = load_err(&dir);
    assert!(
        e.to_string().contains("model-00002-of-00005.safetensors"),
        "{e}"
    );
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let (_t, dir) = scratch("v3_buckets");
    let name = "encoder.layer.1.attention.self.key_proj.weight";
    rewrite_weights(&dir, |t| {
        t.insert(
            name.into(),
            Tensor::zeros((32, 31), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    match load_err(&dir) {
        Error::WeightShape {
            name: n,
            expected,
            got,
        } => {
            assert_eq!(
                (n.as_str(), expected, got),
                (name, vec![32, 32], vec![32, 31])
            );
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn missing_tensor_is_named() {
    let (_t, dir) = scratch("c2p_only");
    let name = "encoder.layer.0.attention.self.pos_key_proj.bias";
    rewrite_weights(&dir, |t| {
        t.remove(name);
    });
    match load_err(&dir) {
        Error::MissingWeight { name: n, .. } => assert_eq!(n, name),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn integer_weights_are_rejected() {
    let (_t, dir) = scratch("v3_buckets");
    rewrite_weights(&dir, |t| {
        t.insert(
            "embeddings.LayerNorm.bias".into(),
            Tensor::zeros(32, candle_core::DType::I64, &Device::Cpu).unwrap(),
        );
    });
    let e = load_err(&dir);
    assert!(e.to_string().contains("embeddings.LayerNorm.bias"), "{e}");
}

#[test]
fn unused_tensors_are_reported_and_ignore_lists_respected() {
    let (_t, dir) = scratch("v3_buckets");
    rewrite_weights(&dir, |t| {
        let z = Tensor::zeros((128, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        t.insert("embeddings.position_embeddings.weight".into(), z.clone());
        t.insert("encoder.extra.weight".into(), z);
    });
    let (_, report) = DebertaV2Model::from_pretrained(&dir, &Device::Cpu).unwrap();
    assert_eq!(report.unexpected, vec!["encoder.extra.weight".to_string()]);
    assert_eq!(
        report.ignored,
        vec!["embeddings.position_embeddings.weight".to_string()]
    );
}

fn model(case: &str) -> DebertaV2Model {
    let dir = common::fixtures_dir().join("models").join(case);
    DebertaV2Model::from_pretrained(dir, &Device::Cpu)
        .unwrap()
        .0
}

fn forward_err(model: &DebertaV2Model, input: ModelInput) -> String {
    match model.forward(&input, ForwardOptions::default()) {
        Ok(_) => panic!("forward should fail"),
        Err(e) => {
            assert!(matches!(e, Error::Input(_)), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn out_of_range_ids_are_input_errors() {
    let m = model("token_types_positions");
    let dev = Device::Cpu;
    let ids = || Tensor::new(&[[1i64, 2, 3]], &dev).unwrap();
    assert!(forward_err(
        &m,
        ModelInput::from_ids(Tensor::new(&[[1i64, 99]], &dev).unwrap())
    )
    .contains("input_ids"));
    assert!(forward_err(
        &m,
        ModelInput::from_ids(Tensor::new(&[[-1i64, 9]], &dev).unwrap())
    )
    .contains("-1"));
    let bad_types = ModelInput::from_ids(ids())
        .with_token_type_ids(Tensor::new(&[[0i64, 3, 0]], &dev).unwrap());
    assert!(forward_err(&m, bad_types).contains("type_vocab_size"));
    let bad_pos = ModelInput::from_ids(ids())
        .with_position_ids(Tensor::new(&[[0i64, 128, 1]], &dev).unwrap());
    assert!(forward_err(&m, bad_pos).contains("max_position_embeddings"));
    let bad_mask =
        ModelInput::from_ids(ids()).with_attention_mask(Tensor::new(&[[1i64, 1]], &dev).unwrap());
    assert!(forward_err(&m, bad_mask).contains("attention_mask"));
    assert!(forward_err(
        &m,
        ModelInput::from_ids(Tensor::new(&[1i64, 2], &dev).unwrap())
    )
    .contains("[batch, len]"));
    let float_ids = ModelInput::from_ids(Tensor::new(&[[1f32, 2.]], &dev).unwrap());
    assert!(forward_err(&m, float_ids).contains("integers"));
}

#[test]
fn too_long_for_absolute_positions_is_an_input_error_but_fine_without_them() {
    let dev = Device::Cpu;
    let long = Tensor::ones((1, 129), candle_core::DType::I64, &dev).unwrap();
    let abs = model("token_types_positions");
    assert!(
        forward_err(&abs, ModelInput::from_ids(long.clone())).contains("max_position_embeddings")
    );
    let rel = model("v3_buckets");
    let out = rel
        .forward(&ModelInput::from_ids(long), ForwardOptions::default())
        .unwrap();
    assert_eq!(out.last_hidden_state.dims(), &[1, 129, 32]);
}
