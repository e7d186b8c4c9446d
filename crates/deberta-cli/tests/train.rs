//! `deberta train` and `deberta grad` end to end: fine-tuning the committed tiny checkpoints on
//! the committed datasets of `fixtures/train` (every head), the interfaces against the golden
//! fixtures, bad lines, and the output directory working with `deberta classify` and `--resume`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{safetensors, Device};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deberta(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deberta {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn train(model: &str, data: &str, out: &Path, extra: &[&str]) -> (Vec<Value>, Vec<Value>, String) {
    let mut args = vec![
        "train",
        "--model",
        model,
        "--train",
        data,
        "--eval",
        data,
        "--output",
        out.to_str().unwrap(),
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    let o = deberta(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    (
        lines(&out.join("log.jsonl")),
        lines(&out.join("metrics.jsonl")),
        stderr,
    )
}

#[test]
fn fine_tunes_a_classifier_until_the_loss_is_small_and_classify_runs_on_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sentiment");
    let o = deberta(&[
        "train",
        "--model",
        "fixtures/tasks/nli",
        "--train",
        "fixtures/train/sentiment.train.jsonl",
        "--eval",
        "fixtures/train/sentiment.eval.jsonl",
        "--output",
        out.to_str().unwrap(),
        "--learning-rate",
        "5e-3",
        "--epochs",
        "30",
        "--batch-size",
        "4",
        "--warmup-ratio",
        "0.1",
        "--seed",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // The three bad lines are reported with their numbers and skipped.
    for line in ["line 5", "line 10", "line 15"] {
        assert!(stderr.contains(line), "{line} not reported:\n{stderr}");
    }
    let log = lines(&out.join("log.jsonl"));
    assert_eq!(log.len(), 150, "20 examples / 4 per batch x 30 epochs");
    let first = log[0]["loss"].as_f64().unwrap();
    let last = log.last().unwrap()["smoothed_loss"].as_f64().unwrap();
    println!("training loss {first:.4} -> {last:.4} (smoothed)");
    assert!(
        last < 0.05,
        "the training loss should fall below 0.05, got {last}"
    );
    assert_eq!(
        log[0]["learning_rate"].as_f64().unwrap(),
        0.0,
        "warmup starts at lr 0"
    );
    let metrics = lines(&out.join("metrics.jsonl"));
    assert!(metrics.last().unwrap()["accuracy"].is_number());
    assert!(metrics.last().unwrap()["macro_f1"].is_number());

    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"]["0"], "negative");
    assert_eq!(config["id2label"]["1"], "positive");
    assert_eq!(config["num_labels"], 2);
    assert_eq!(config["problem_type"], "single_label_classification");
    assert!(out.join("tokenizer.json").is_file());
    assert!(out.join("training_state/optimizer.safetensors").is_file());

    // The output is a model directory the task commands use; training examples come back right.
    let o = deberta(&[
        "classify",
        "--model",
        out.to_str().unwrap(),
        "a wonderful film with great acting",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer[0]["label"], "positive", "{stdout}");
}

/// Every other head trains from its JSON-lines format and reports its task's metrics.
#[test]
fn every_head_trains_from_its_data_format() {
    let cases = [
        (
            "fixtures/tasks/ner",
            "fixtures/train/ner.jsonl",
            vec!["f1", "precision", "recall", "accuracy"],
        ),
        (
            "fixtures/tasks/qa",
            "fixtures/train/squad.jsonl",
            vec!["exact_match", "f1"],
        ),
        (
            "fixtures/tasks/choice",
            "fixtures/train/swag.jsonl",
            vec!["accuracy"],
        ),
        (
            "fixtures/tasks/fill_mask",
            "fixtures/train/mlm.jsonl",
            vec!["perplexity", "accuracy"],
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (model, data, keys) in cases {
        let out = tmp.path().join(model.replace('/', "_"));
        let extra = [
            "--learning-rate",
            "1e-2",
            "--epochs",
            "15",
            "--batch-size",
            "2",
            "--max-length",
            "48",
        ];
        let (log, metrics, _) = train(model, data, &out, &extra);
        let first = log[0]["loss"].as_f64().unwrap();
        let last = log.last().unwrap()["smoothed_loss"].as_f64().unwrap();
        println!(
            "{model}: {} steps, loss {first:.4} -> {last:.4}; eval {}",
            log.len(),
            metrics.last().unwrap()
        );
        assert!(
            last < first,
            "{model}: the loss did not fall ({first} -> {last})"
        );
        for key in keys.iter().chain(&["loss"]) {
            assert!(
                metrics.last().unwrap()[key].is_number(),
                "{model}: no {key} in {:?}",
                metrics.last()
            );
        }
        assert!(out.join("model.safetensors").is_file());
    }
}

/// `deberta grad` writes transformers' gradients under transformers' names.
#[test]
fn grad_matches_the_golden_gradients() {
    let tmp = tempfile::tempdir().unwrap();
    for case in ["mlm_legacy_v3", "qa_conv", "seq_multi_label"] {
        let dir = repo().join("fixtures/grad").join(case);
        let out = tmp.path().join(format!("{case}.safetensors"));
        deberta(&[
            "grad",
            "--model",
            dir.to_str().unwrap(),
            "--input",
            dir.join("input.json").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        let got = safetensors::load(&out, &Device::Cpu).unwrap();
        let want = safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let mut names: Vec<&String> = got.keys().collect();
        names.sort();
        let mut expected: Vec<&String> = want.keys().collect();
        expected.sort();
        assert_eq!(names, expected, "{case}: tensor names");
        let mut worst = 0f32;
        for (name, g) in &got {
            let w = &want[name];
            let d = (g - w)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            let bound = w
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d <= 1e-5 + 1e-3 * bound, "{case} {name}: max |diff| {d}");
            worst = worst.max(d);
        }
        println!("{case}: {} tensors, max |diff| {worst:.3e}", got.len());
    }
}

/// `deberta train --tokenized` takes the AdamW steps torch takes (the optimiser check), and a
/// run resumed from its checkpoint ends with the same bytes.
#[test]
fn tokenized_training_matches_torch_and_resumes_bit_for_bit() {
    let dir = repo().join("fixtures/optim/adamw_linear_warmup_clip");
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let flags = [
        "--max-steps",
        "6",
        "--warmup-steps",
        "2",
        "--learning-rate",
        "1e-3",
        "--weight-decay",
        "0.01",
    ];
    let input = dir.join("input.json");
    let mut args = vec![
        "train",
        "--model",
        dir.to_str().unwrap(),
        "--tokenized",
        input.to_str().unwrap(),
        "--output",
        full.to_str().unwrap(),
        "--save-steps",
        "3",
    ];
    args.extend_from_slice(&flags);
    deberta(&args);
    let got = safetensors::load(full.join("model.safetensors"), &Device::Cpu).unwrap();
    let want = safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let mut worst = 0f32;
    for (name, g) in &got {
        let w = &want[&format!("param.{name}")];
        let d = (g - w)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        worst = worst.max(d.to_scalar::<f32>().unwrap());
    }
    println!(
        "6 AdamW steps vs torch: max |diff| {worst:.3e} over {} tensors",
        got.len()
    );
    assert!(worst <= 1e-4);

    let resumed = tmp.path().join("resumed");
    let checkpoint = full.join("checkpoint-3");
    let mut args = vec![
        "train",
        "--model",
        dir.to_str().unwrap(),
        "--resume",
        checkpoint.to_str().unwrap(),
        "--tokenized",
        input.to_str().unwrap(),
        "--output",
        resumed.to_str().unwrap(),
        "--save-steps",
        "3",
    ];
    args.extend_from_slice(&flags);
    deberta(&args);
    for file in ["model.safetensors", "training_state/optimizer.safetensors"] {
        assert!(
            std::fs::read(full.join(file)).unwrap() == std::fs::read(resumed.join(file)).unwrap(),
            "{file} differs after resuming"
        );
    }
}

#[test]
fn a_data_file_without_a_usable_line_is_a_named_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("bad.jsonl");
    std::fs::write(&data, "not json\n{\"text\": 3}\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args([
            "train",
            "--model",
            "fixtures/tasks/nli",
            "--train",
            data.to_str().unwrap(),
            "--output",
        ])
        .arg(tmp.path().join("out"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("bad.jsonl"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_training_batch_over_the_memory_limit_is_a_named_error() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("big.json");
    let ids = vec![vec![5u32; 512]; 64];
    std::fs::write(
        &input,
        serde_json::json!({"input_ids": ids, "labels": vec![0; 64]}).to_string(),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args([
            "train",
            "--model",
            "fixtures/tasks/nli",
            "--max-steps",
            "1",
            "--max-memory",
            "2G",
        ])
        .arg("--tokenized")
        .arg(&input)
        .arg("--output")
        .arg(tmp.path().join("out"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("a training step on 64 x 512 tokens"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
