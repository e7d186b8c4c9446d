//! `deberta tokenize` end to end on the real DeBERTa-v3 tokenizer files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn v3_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deberta-tokenizer/tests/fixtures/deberta-v3")
}

fn tokenize(args: &[&str], stdin: &str) -> (bool, Vec<serde_json::Value>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deberta"))
        .arg("tokenize")
        .args(["--model", v3_dir().to_str().unwrap()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn slow_and_fast_give_transformers_ids_with_char_offsets() {
    // transformers 4.57.6 (slow and fast agree here): "Hello wörld" -> [CLS] ▁Hello ▁w ö rld [SEP]
    for imp in ["slow", "fast"] {
        let (ok, lines, err) = tokenize(
            &["--impl", imp],
            "{\"text\": \"Hello wörld\", \"text_pair\": \"ok\"}\n",
        );
        assert!(ok, "{err}");
        let line = &lines[0];
        let ids: Vec<i64> = serde_json::from_value(line["input_ids"].clone()).unwrap();
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(
            line["token_type_ids"].as_array().unwrap().last().unwrap(),
            1
        );
        assert_eq!(line["decoded"].as_str().unwrap().trim(), "Hello wörld ok");
        let offsets = line["offset_mapping"].as_array().unwrap();
        assert_eq!(offsets.len(), ids.len());
        println!("{imp}: {line}");
    }
}

#[test]
fn stride_produces_overflow_windows_and_bad_lines_are_reported() {
    let text = "word ".repeat(40);
    let input = format!("{{\"text\": \"{text}\"}}\nnot json\n");
    let (ok, lines, err) = tokenize(&["--max-length", "16", "--stride", "4"], &input);
    assert!(!ok && err.contains("1 of 2 lines failed"), "{err}");
    assert_eq!(lines[0]["input_ids"].as_array().unwrap().len(), 16);
    assert!(!lines[0]["overflow"].as_array().unwrap().is_empty());
    assert_eq!(lines[1]["line"], 2);
}
