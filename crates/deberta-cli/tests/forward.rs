//! `deberta forward` end to end: outputs equal transformers' fixtures, errors exit non-zero.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use candle_core::{safetensors, Device};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn deberta(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args(args)
        .output()
        .unwrap()
}

fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
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

fn forward_matches(dir: PathBuf, input: &str, expected: &str, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    let mut args = vec!["forward", "--model", dir.to_str().unwrap(), "--input"];
    let input = dir.join(input);
    args.push(input.to_str().unwrap());
    args.extend(["--output", out.to_str().unwrap()]);
    args.extend(extra);
    let run = deberta(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = safetensors::load(&out, &Device::Cpu).unwrap();
    let want = safetensors::load(dir.join(expected), &Device::Cpu).unwrap();
    let mut got_keys: Vec<_> = got.keys().collect();
    let mut want_keys: Vec<_> = want.keys().collect();
    got_keys.sort();
    want_keys.sort();
    assert_eq!(got_keys, want_keys);
    for (k, v) in &want {
        let d = max_diff(&got[k], v);
        println!("{k}: max |diff| {d:.3e}");
        assert!(d < 1e-4, "{k}: {d}");
    }
}

#[test]
fn base_model_with_hidden_states_and_attentions() {
    let dir = fixtures().join("models/v3_buckets");
    forward_matches(
        dir,
        "input.json",
        "expected.safetensors",
        &["--hidden-states", "--attentions"],
    );
}

#[test]
fn bf16_linear_layers_match_transformers_with_the_same_rounding() {
    // expected_bf16: transformers with the encoder linears' weights and inputs rounded to
    // bf16 (scripts/gen_bf16_fixtures.py); this case has no input near a rounding boundary.
    let dir = fixtures().join("models/separate_pos_proj");
    forward_matches(
        dir,
        "input.json",
        "expected_bf16.safetensors",
        &["--dtype", "bf16"],
    );
}

#[test]
fn head_with_labels_writes_logits_and_loss() {
    let dir = fixtures().join("heads/seq_v3");
    forward_matches(
        dir,
        "labels_negative_dropped.input.json",
        "labels_negative_dropped.expected.safetensors",
        &["--hidden-states"],
    );
    let dir = fixtures().join("heads/qa_conv");
    forward_matches(
        dir,
        "positions.input.json",
        "positions.expected.safetensors",
        &["--head", "question-answering", "--hidden-states"],
    );
}

#[test]
fn base_on_a_head_checkpoint_runs_the_backbone() {
    let dir = fixtures().join("models/format_prefixed");
    forward_matches(
        dir,
        "input.json",
        "expected.safetensors",
        &["--head", "base", "--hidden-states", "--attentions"],
    );
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.safetensors");
    let out = out.to_str().unwrap();
    let good = fixtures().join("models/v3_buckets");
    let good = good.to_str().unwrap();
    let bad_json = tmp.path().join("bad.json");
    std::fs::write(&bad_json, "{\"input_ids\": [[1, 2], [3]]}").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", "/nonexistent", "--input", "x.json"],
            "not a directory",
        ),
        (
            vec!["--model", good, "--input", "/nonexistent.json"],
            "nonexistent.json",
        ),
        (
            vec!["--model", good, "--input", bad_json.to_str().unwrap()],
            "rectangular",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["forward"];
        full.extend(args);
        full.extend(["--output", out]);
        let run = deberta(&full);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
