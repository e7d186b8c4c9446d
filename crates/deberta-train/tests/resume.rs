//! An interrupted run resumed from its checkpoint continues bit for bit like an uninterrupted
//! one: same weights, same optimiser moments, same losses, with dropout on (its stream is part
//! of the saved state).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../deberta/tests/common/mod.rs"]
mod common;

use std::path::Path;

use candle_core::Device;
use deberta::TaskModel;
use deberta_train::{FixedBatch, OwnedLabels, TrainOptions, Trainer};

/// The v3_buckets gradient fixture with dropout 0.1 everywhere.
fn model_with_dropout(dir: &Path) {
    let src = common::fixtures_dir().join("grad/v3_buckets");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    for key in [
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "pooler_dropout",
    ] {
        config[key] = serde_json::json!(0.1);
    }
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn trainer(model_dir: &Path, out: &Path, save_steps: Option<u64>) -> Trainer {
    let device = Device::Cpu;
    let inputs = common::ForwardInputs::from_file(
        common::fixtures_dir().join("grad/v3_buckets/input.json"),
        &device,
    )
    .unwrap();
    let labels = OwnedLabels {
        labels: inputs.labels.clone(),
        ..Default::default()
    };
    let model = TaskModel::from_pretrained(model_dir, None, &device).unwrap();
    let options = TrainOptions {
        learning_rate: 1e-3,
        weight_decay: 0.01,
        warmup_steps: Some(2),
        max_steps: Some(6),
        save_steps,
        ..TrainOptions::default()
    };
    Trainer::new(
        model,
        Box::new(FixedBatch::new(inputs.model_input(), labels)),
        options,
        out,
    )
    .unwrap()
}

fn losses(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].to_string())
        .collect()
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    model_with_dropout(&model);
    let full = tmp.path().join("full");
    trainer(&model, &full, Some(3)).run().unwrap();

    let resumed = tmp.path().join("resumed");
    let checkpoint = full.join("checkpoint-3");
    let mut t = trainer(&checkpoint, &resumed, None)
        .resume(&checkpoint)
        .unwrap();
    assert_eq!(t.steps_taken(), 3);
    t.run().unwrap();

    for file in ["model.safetensors", "training_state/optimizer.safetensors"] {
        let a = std::fs::read(full.join(file)).unwrap();
        let b = std::fs::read(resumed.join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the full and the resumed run"
        );
    }
    let (all, tail) = (losses(&full), losses(&resumed));
    assert_eq!(all.len(), 6);
    assert_eq!(&all[3..], &tail[..], "losses of steps 4..6");
    // Dropout is on: the losses of a fixed batch differ from step to step even at lr 0.
    assert_ne!(
        all[0], all[1],
        "dropout should change the loss between steps"
    );
    println!("resumed at step 3: weights, moments and losses {tail:?} identical");
}

#[test]
fn resuming_with_other_options_is_refused_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    model_with_dropout(&model);
    let full = tmp.path().join("full");
    trainer(&model, &full, Some(3)).run().unwrap();
    let checkpoint = full.join("checkpoint-3");
    let device = Device::Cpu;
    let inputs = common::ForwardInputs::from_file(
        common::fixtures_dir().join("grad/v3_buckets/input.json"),
        &device,
    )
    .unwrap();
    let labels = OwnedLabels {
        labels: inputs.labels.clone(),
        ..Default::default()
    };
    let m = TaskModel::from_pretrained(&checkpoint, None, &device).unwrap();
    let options = TrainOptions {
        learning_rate: 2e-3,
        weight_decay: 0.01,
        warmup_steps: Some(2),
        max_steps: Some(6),
        ..TrainOptions::default()
    };
    let err = Trainer::new(
        m,
        Box::new(FixedBatch::new(inputs.model_input(), labels)),
        options,
        tmp.path().join("x"),
    )
    .unwrap()
    .resume(&checkpoint)
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("learning_rate"), "{err}");
}
