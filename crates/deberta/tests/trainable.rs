//! The training-facing structure: one source of truth per parameter. A value changed through
//! `TaskModel::parameters()` changes what both execution paths compute (the fused path's
//! derived weights are rebuilt) and is what `save_pretrained` writes; training mode switches
//! to the candle path with dropout, and eval mode is deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use candle_core::{Device, Tensor};
use deberta::{
    DropoutRng, ForwardOptions, Labels, LinearFormat, ModelInput, PathChoice, TaskModel,
};

const WEIGHT: &str = "deberta.encoder.layer.0.attention.self.query_proj.weight";

fn input() -> ModelInput {
    let ids = Tensor::new(&[[1u32, 10, 20, 30, 2], [1, 40, 50, 2, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 1, 0]], &Device::Cpu).unwrap();
    ModelInput::from_ids(ids).with_attention_mask(mask)
}

fn logits(model: &TaskModel) -> Tensor {
    model
        .forward(&input(), Labels::default(), ForwardOptions::default())
        .unwrap()
        .logits
        .unwrap()
}

fn load(dir: &std::path::Path, path: PathChoice) -> TaskModel {
    let model =
        TaskModel::from_pretrained_with(dir, None, &Device::Cpu, common::on_path(path)).unwrap();
    assert_eq!(model.plan().path_name(), common::path_name(path));
    model
}

fn perturbed_parameter_is_computed_and_saved(path: PathChoice) -> Tensor {
    let dir = common::fixtures_dir().join("heads/seq_v3");
    let model = load(&dir, path);
    let before = logits(&model);
    let w = model.parameters().get(WEIGHT).unwrap().value().clone();
    let bumped = (&w + w.ones_like().unwrap().affine(0.05, 0.0).unwrap()).unwrap();
    model.parameters().set(WEIGHT, &bumped).unwrap();
    let after = logits(&model);
    let moved = common::max_abs_diff(&before, &after);
    println!("{path:?}: logits moved by {moved:.3e}");
    assert!(
        moved > 1e-3,
        "{path:?}: the change did not reach the forward pass"
    );
    assert_eq!(
        common::max_abs_diff(model.parameters().get(WEIGHT).unwrap().value(), &bumped),
        0.0
    );

    let tmp = tempfile::tempdir().unwrap();
    model.save_pretrained(tmp.path()).unwrap();
    let reloaded = load(tmp.path(), path);
    let again = logits(&reloaded);
    common::assert_close(&format!("{path:?} reloaded"), &again, &after, 0.0, 0.0);
    after
}

#[test]
fn a_changed_parameter_reaches_both_paths_and_the_save() {
    let fused = perturbed_parameter_is_computed_and_saved(PathChoice::CpuFused);
    let candle = perturbed_parameter_is_computed_and_saved(PathChoice::Candle);
    common::assert_close(
        "fused vs candle after the change",
        &fused,
        &candle,
        1e-4,
        1e-4,
    );
}

#[test]
fn int8_weights_follow_a_changed_parameter() {
    let dir = common::fixtures_dir().join("heads/seq_v3");
    let mut model = load(&dir, PathChoice::CpuFused);
    model.set_linear_format(LinearFormat::Int8).unwrap();
    let before = logits(&model);
    let w = model.parameters().get(WEIGHT).unwrap().value().clone();
    model
        .parameters()
        .set(WEIGHT, &w.affine(3.0, 0.0).unwrap())
        .unwrap();
    assert!(common::max_abs_diff(&before, &logits(&model)) > 1e-3);
}

/// The `seq_v3` case with dropout 0.1 at every site.
fn with_dropout() -> tempfile::TempDir {
    let src = common::fixtures_dir().join("heads/seq_v3");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        tmp.path().join("model.safetensors"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    for key in [
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "pooler_dropout",
    ] {
        config[key] = serde_json::json!(0.1);
    }
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    tmp
}

#[test]
fn training_mode_runs_on_candle_with_dropout_and_eval_is_deterministic() {
    let tmp = with_dropout();
    let dir = tmp.path();
    let mut model = load(dir, PathChoice::Auto);
    assert_eq!(model.plan().path_name(), "cpu-fused");
    let eval_a = logits(&model);
    let eval_b = logits(&model);
    assert_eq!(common::max_abs_diff(&eval_a, &eval_b), 0.0);

    model.train(DropoutRng::new(1)).unwrap();
    assert_eq!(model.plan().path_name(), "candle");
    assert!(model.plan().training());
    let train_a = logits(&model);
    let train_b = logits(&model);
    assert!(
        common::max_abs_diff(&train_a, &train_b) > 0.0,
        "dropout drew no masks"
    );
    // The same seed draws the same masks.
    let mut replay = load(dir, PathChoice::Auto);
    replay.train(DropoutRng::new(1)).unwrap();
    assert_eq!(common::max_abs_diff(&train_a, &logits(&replay)), 0.0);

    model.eval().unwrap();
    assert_eq!(model.plan().path_name(), "cpu-fused");
    assert_eq!(common::max_abs_diff(&eval_a, &logits(&model)), 0.0);
}

#[test]
fn training_with_int8_linear_layers_is_refused_naming_both() {
    let dir = common::fixtures_dir().join("heads/seq_v3");
    let mut model = load(&dir, PathChoice::Auto);
    model.set_linear_format(LinearFormat::Int8).unwrap();
    let err = model.train(DropoutRng::new(0)).unwrap_err().to_string();
    assert!(err.contains("training") && err.contains("int8"), "{err}");
    let mut candle = load(&dir, PathChoice::Candle);
    let err = candle
        .set_linear_format(LinearFormat::Int8)
        .unwrap_err()
        .to_string();
    assert!(err.contains("int8") && err.contains("candle path"), "{err}");
}

#[test]
fn bf16_compute_runs_on_the_candle_path_close_to_f32() {
    let dir = common::fixtures_dir().join("heads/seq_v3");
    let f32_logits = logits(&load(&dir, PathChoice::Auto));
    let options = deberta::LoadOptions {
        dtype: Some(candle_core::DType::BF16),
        ..Default::default()
    };
    let model = TaskModel::from_pretrained_with(&dir, None, &Device::Cpu, options).unwrap();
    assert_eq!(model.plan().path_name(), "candle");
    assert_eq!(
        model.parameters().get(WEIGHT).unwrap().value().dtype(),
        candle_core::DType::BF16
    );
    let bf16_logits = logits(&model).to_dtype(candle_core::DType::F32).unwrap();
    // bf16 keeps 8 bits of mantissa: a loose bound, to show the dtype is computed end to end.
    common::assert_close("bf16 vs f32", &bf16_logits, &f32_logits, 5e-2, 5e-2);
}
