//! `deberta convert` and `deberta forward --weights`: the binary end to end, and the script's
//! record of transformers loading every conversion direction
//! (`fixtures/tf/convert_roundtrip.json`, `scripts/gen_tf_fixtures.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn deberta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn forward(dir: &Path, input: &Path, extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    let mut args = vec![
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(&deberta(&args))
}

#[test]
fn converts_tf_to_every_format_and_forward_reads_each() {
    let src = fixtures().join("tf/seq_conv");
    let input = src.join("input.json");
    let tmp = tempfile::tempdir().unwrap();
    for (fmt, file) in [
        ("safetensors", "model.safetensors"),
        ("pytorch", "pytorch_model.bin"),
        ("tf", "tf_model.h5"),
    ] {
        let dst = tmp.path().join(fmt);
        let stderr = ok(&deberta(&[
            "convert",
            "--model",
            src.to_str().unwrap(),
            "--to",
            fmt,
            "--output",
            dst.to_str().unwrap(),
        ]));
        assert!(stderr.contains("tf_model.h5"), "{stderr}");
        assert!(dst.join(file).is_file() && dst.join("config.json").is_file());
        let stderr = forward(&dst, &input, &[]);
        assert!(stderr.contains(file), "{stderr}");
    }
}

#[test]
fn forward_weights_flag_overrides_the_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("tf/base_v3");
    let dir = tmp.path().join("both");
    ok(&deberta(&[
        "convert",
        "--model",
        src.to_str().unwrap(),
        "--to",
        "safetensors",
        "--output",
        dir.to_str().unwrap(),
    ]));
    std::fs::copy(src.join("tf_model.h5"), dir.join("tf_model.h5")).unwrap();
    let input = src.join("input.json");
    assert!(forward(&dir, &input, &[]).contains("model.safetensors"));
    assert!(forward(&dir, &input, &["--weights", "tf"]).contains("tf_model.h5"));
    let out = deberta(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        tmp.path().join("x.safetensors").to_str().unwrap(),
        "--weights",
        "pytorch",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("pytorch_model.bin"),
        "{stderr}"
    );
}

#[test]
fn refusals_exit_non_zero_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("heads/mlm_lm_predictions_v3");
    let out = deberta(&[
        "convert",
        "--model",
        src.to_str().unwrap(),
        "--to",
        "tf",
        "--output",
        tmp.path().join("o").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("lm_predictions") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// Every direction, loaded back by transformers (PyTorch classes 5.24 for safetensors and
/// pytorch_model.bin, TF classes 4.57.6 for tf_model.h5) with no missing or unexpected keys
/// and the source's outputs at real tokens; conversions TF cannot express were refused.
#[test]
fn transformers_loaded_every_conversion() {
    let text = std::fs::read_to_string(fixtures().join("tf/convert_roundtrip.json")).unwrap();
    let results: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut directions = std::collections::BTreeSet::new();
    for r in &results {
        assert_eq!(r["ok"], true, "{r}");
        if r["expect_error"] == false {
            assert!(r["max_abs_diff"].as_f64().unwrap() <= 1e-4, "{r}");
            let source = r["source"].as_str().unwrap();
            let from = if source.starts_with("tf/") {
                "tf"
            } else if source.contains("pytorch_bin") {
                "pytorch"
            } else {
                "safetensors"
            };
            directions.insert(format!("{from}->{}", r["to"].as_str().unwrap()));
        }
    }
    for want in [
        "tf->safetensors",
        "tf->pytorch",
        "tf->tf",
        "safetensors->tf",
        "pytorch->tf",
        "safetensors->pytorch",
        "pytorch->safetensors",
    ] {
        assert!(directions.contains(want), "{want} untested: {directions:?}");
    }
    assert!(results.iter().any(|r| r["expect_error"] == true));
}
