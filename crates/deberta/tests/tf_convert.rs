//! Conversions between safetensors, PyTorch and TF checkpoints, checked in Rust (the script
//! checks the same directions with transformers, `fixtures/tf/convert_roundtrip.json`), and the
//! choice of weights file when a directory has several.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::ForwardInputs;
use deberta::export::convert;
use deberta::{Checkpoint, ForwardOptions, Labels, ModelInput, TaskModel, WeightFormat};

const FORMATS: [WeightFormat; 3] = [
    WeightFormat::Safetensors,
    WeightFormat::PyTorch,
    WeightFormat::Tf,
];

fn outputs(model: &TaskModel, input: &Path) -> Vec<Tensor> {
    let inputs = ForwardInputs::from_file(input, &Device::Cpu).unwrap();
    let input = ModelInput {
        input_ids: inputs.input_ids.clone(),
        attention_mask: inputs.attention_mask.clone(),
        token_type_ids: inputs.token_type_ids.clone(),
        position_ids: inputs.position_ids.clone(),
    };
    let opts = ForwardOptions {
        output_hidden_states: true,
        output_attentions: false,
    };
    let out = model.forward(&input, Labels::default(), opts).unwrap();
    let mut all: Vec<Tensor> = [out.last_hidden_state, out.logits, out.start_logits]
        .into_iter()
        .flatten()
        .collect();
    all.extend(out.hidden_states.unwrap());
    all
}

fn max_diff(a: &[Tensor], b: &[Tensor]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| common::max_abs_diff(x, y))
        .fold(0.0, f32::max)
}

fn round_trips(src: &Path, input: &Path) {
    let original = TaskModel::from_pretrained(src, None, &Device::Cpu).unwrap();
    let want = outputs(&original, input);
    let tmp = tempfile::tempdir().unwrap();
    for to in FORMATS {
        let dst = tmp.path().join(to.name());
        let done = convert(src, &dst, to, None).unwrap();
        assert_eq!(done.kind, original.kind());
        let back = TaskModel::from_pretrained(&dst, None, &Device::Cpu).unwrap();
        let report = back.report();
        assert!(
            report.unexpected.is_empty() && report.initialized.is_empty(),
            "{to:?}: {report:?}"
        );
        assert_eq!(report.files, vec![done.weights.clone()]);
        let d = max_diff(&outputs(&back, input), &want);
        println!("{} -> {to:?}: max |diff| {d:.3e}", src.display());
        assert!(d <= 1e-6, "{to:?}: {d}");
    }
}

fn tf_case(name: &str) -> PathBuf {
    common::fixtures_dir().join("tf").join(name)
}

#[test]
fn tf_heads_round_trip_through_every_format() {
    for case in [
        "seq_conv",
        "mlm_embedding_size",
        "mc_v3",
        "qa_v3",
        "tok_conv",
    ] {
        let dir = tf_case(case);
        round_trips(&dir, &dir.join("input.json"));
    }
}

#[test]
fn tf_bare_models_round_trip_through_every_format() {
    for case in ["base_v2_abs", "base_conv_groups2_block_diagonal"] {
        let dir = tf_case(case);
        round_trips(&dir, &dir.join("input.json"));
    }
}

#[test]
fn grouped_conv_survives_tf() {
    // PyTorch conv_groups=2 -> block-diagonal TF kernel -> grouped again.
    let dir = common::fixtures_dir().join("models/conv_groups_gelu");
    round_trips(&dir, &dir.join("input.json"));
}

#[test]
fn tf_cannot_hold_the_lm_predictions_head() {
    let src = common::fixtures_dir().join("heads/mlm_lm_predictions_v3");
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("out");
    let err = convert(&src, &dst, WeightFormat::Tf, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("lm_predictions.lm_head"), "{err}");
    assert!(!dst.exists(), "nothing is written on failure");
}

#[test]
fn refuses_to_overwrite_the_source() {
    let src = tf_case("base_v3");
    let err = convert(&src, &src, WeightFormat::Safetensors, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("source directory"), "{err}");
}

#[test]
fn copies_config_and_tokenizer_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for f in ["config.json", "tf_model.h5"] {
        std::fs::copy(tf_case("base_v3").join(f), src.join(f)).unwrap();
    }
    std::fs::write(src.join("spm.model"), b"not really a model").unwrap();
    std::fs::write(src.join("tokenizer_config.json"), b"{}").unwrap();
    let dst = tmp.path().join("dst");
    let done = convert(&src, &dst, WeightFormat::PyTorch, None).unwrap();
    for f in [
        "config.json",
        "pytorch_model.bin",
        "spm.model",
        "tokenizer_config.json",
    ] {
        assert!(dst.join(f).is_file(), "{f}");
        assert!(done.files.contains(&dst.join(f)), "{f}");
    }
    assert!(!dst.join("tokenizer.json").exists());
}

/// safetensors, then PyTorch, then TF, as transformers chooses; an override picks one.
#[test]
fn weight_file_choice_and_override() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("all");
    let src = tf_case("seq_v3");
    convert(&src, &dir, WeightFormat::Safetensors, None).unwrap();
    let pt = tmp.path().join("pt");
    convert(&src, &pt, WeightFormat::PyTorch, None).unwrap();
    std::fs::copy(pt.join("pytorch_model.bin"), dir.join("pytorch_model.bin")).unwrap();
    std::fs::copy(src.join("tf_model.h5"), dir.join("tf_model.h5")).unwrap();
    let chosen = |format: Option<WeightFormat>| {
        let c = Checkpoint::open_dir(&dir, format).unwrap();
        let name = c.paths()[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        (c.format(), name)
    };
    assert_eq!(
        chosen(None),
        (WeightFormat::Safetensors, "model.safetensors".into())
    );
    assert_eq!(
        chosen(Some(WeightFormat::Tf)),
        (WeightFormat::Tf, "tf_model.h5".into())
    );
    assert_eq!(
        chosen(Some(WeightFormat::PyTorch)),
        (WeightFormat::PyTorch, "pytorch_model.bin".into())
    );
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert_eq!(
        chosen(None),
        (WeightFormat::PyTorch, "pytorch_model.bin".into())
    );
    std::fs::remove_file(dir.join("pytorch_model.bin")).unwrap();
    assert_eq!(chosen(None), (WeightFormat::Tf, "tf_model.h5".into()));
    assert_eq!("tf".parse::<WeightFormat>().unwrap(), WeightFormat::Tf);
    assert!("onnx".parse::<WeightFormat>().is_err());
}
