//! Oversized inputs and configs end in a named error before the big allocation, under an
//! address-space limit (each case in a child process, `common/isolate.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use deberta::{DebertaV2Model, Error, ForwardOptions, HeadKind, ModelInput, TaskModel};
use isolate::isolated;

const LIMIT: u64 = 2 << 30;

fn scratch(case: &str) -> (tempfile::TempDir, PathBuf) {
    let src = common::fixtures_dir().join("models").join(case);
    let tmp = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(name), tmp.path().join(name)).unwrap();
    }
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, cfg.to_string()).unwrap();
}

fn config_err(dir: &Path) -> (String, String) {
    match DebertaV2Model::from_pretrained(dir, &Device::Cpu) {
        Ok(_) => panic!("should fail"),
        Err(Error::Config { field, reason }) => {
            println!("error: config field `{field}`: {reason}");
            (field, reason)
        }
        Err(e) => panic!("not a config error: {e}"),
    }
}

#[test]
fn implausible_config_sizes_name_the_field() {
    isolated("implausible_config_sizes_name_the_field", LIMIT, || {
        for (field, value) in [
            ("num_labels", 1_000_000_000u64),
            ("vocab_size", 1 << 40),
            ("hidden_size", 1 << 20),
            ("num_hidden_layers", 100_000),
            ("intermediate_size", 1 << 30),
            ("max_position_embeddings", 1 << 40),
        ] {
            let (_t, dir) = scratch("v3_buckets");
            edit_config(&dir, |c| c[field] = value.into());
            let (got, reason) = config_err(&dir);
            assert_eq!(got, field, "{reason}");
            assert!(reason.contains("implausibly large"), "{reason}");
        }
    });
}

#[test]
fn config_whose_weights_exceed_the_limit() {
    isolated("config_whose_weights_exceed_the_limit", LIMIT, || {
        deberta::limits::set_max_memory(Some(64 << 20));
        // 1,000,000 labels x 32 hidden: a 128 MB head matrix, under the plausibility caps.
        let (_t, dir) = scratch("v3_buckets");
        edit_config(&dir, |c| c["num_labels"] = 1_000_000.into());
        let e =
            TaskModel::from_pretrained(&dir, Some(HeadKind::SequenceClassification), &Device::Cpu)
                .err()
                .expect("should fail");
        println!("error: {e}");
        assert!(matches!(e, Error::MemoryLimit { .. }), "{e}");
        assert!(e.to_string().contains("64.0 MiB"), "{e}");
    });
}

#[test]
fn forward_on_100000_tokens_is_refused() {
    isolated("forward_on_100000_tokens_is_refused", LIMIT, || {
        let dir = common::fixtures_dir().join("models/v3_buckets");
        let (model, _) = DebertaV2Model::from_pretrained(&dir, &Device::Cpu).unwrap();
        let ids = Tensor::zeros((1, 100_000), candle_core::DType::U32, &Device::Cpu).unwrap();
        let e = model
            .forward(&ModelInput::from_ids(ids), ForwardOptions::default())
            .expect_err("should fail");
        println!("error: {e}");
        assert!(matches!(e, Error::MemoryLimit { .. }), "{e}");
        assert!(e.to_string().contains("1 x 100000 tokens"), "{e}");
        // A batch that fits still runs.
        let ids = Tensor::zeros((2, 16), candle_core::DType::U32, &Device::Cpu).unwrap();
        model
            .forward(&ModelInput::from_ids(ids), ForwardOptions::default())
            .unwrap();
    });
}

#[test]
fn config_json_wrong_types_name_the_field() {
    let (_t, dir) = scratch("v3_buckets");
    edit_config(&dir, |c| c["hidden_act"] = 3.into());
    let (field, reason) = config_err(&dir);
    assert_eq!(field, "hidden_act", "{reason}");
}
