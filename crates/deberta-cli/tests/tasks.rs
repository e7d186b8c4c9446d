//! The task subcommands end to end on the committed task fixtures (`fixtures/tasks/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

fn model(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tasks")
        .join(name);
    p.to_str().unwrap().to_string()
}

/// Runs `deberta <args>` with `stdin`; returns (success, stdout, stderr).
fn deberta(args: &[&str], stdin: impl AsRef<[u8]>) -> (bool, String, String) {
    let (code, out, err) = deberta_code(args, stdin.as_ref());
    (code == Some(0), out, err)
}

/// Runs `deberta <args>` with `stdin`; returns (exit code, stdout, stderr).
fn deberta_code(args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn fill_mask_single_and_jsonl_with_bad_lines() {
    let m = model("fill_mask");
    let (ok, out, err) = deberta(
        &[
            "fill-mask",
            "--model",
            &m,
            "--top-k",
            "2",
            "The capital of France is [MASK].",
        ],
        "",
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["token_str"], "Umpqua");

    let input = "{\"text\": \"A [MASK] b.\"}\n{\"text\": \"no mask here\"}\nnot json\n\n{\"text\": \"\"}\n{\"text\": \"[MASK] and [MASK]\"}\n";
    let (ok, out, err) = deberta(&["fill-mask", "--model", &m, "--batch-size", "2"], input);
    assert!(!ok);
    assert!(
        err.contains("3 of 5 lines failed: line(s) 2, 3, 5"),
        "{err}"
    );
    let out = lines(&out);
    assert_eq!(out.len(), 5);
    assert!(out[0].is_array());
    assert_eq!(out[1]["line"], 2);
    assert!(out[1]["error"]
        .as_str()
        .unwrap()
        .contains("no mask token ([MASK])"));
    assert!(out[2]["error"].as_str().unwrap().contains("malformed JSON"));
    assert!(out[3]["error"].as_str().unwrap().contains("`text`"));
    assert_eq!(
        out[4].as_array().unwrap().len(),
        2,
        "two masks: one list per mask"
    );
}

#[test]
fn jsonl_bad_lines_of_every_kind_are_answered_in_order_and_fail_the_job() {
    let m = model("nli");
    // Line 3 holds an invalid UTF-8 byte, line 4 is blank (skipped, but counted), line 5 is cut
    // short, line 6 is not JSON, line 7 has an unknown field, line 8 an ill-typed one; the good
    // lines around them are still answered, in order.
    let input = b"{\"text\": \"A man is eating.\"}\n{\"text\": \"Hello\", \"text_pair\": \"Hi\"}\n{\"text\": \"caf\xe9\"}\n\n{\"text\": \nnot json\n{\"text\": \"x\", \"label\": 1}\n{\"text\": [1]}\n{\"text\": \"Last one.\"}\n";
    let args = [
        "classify",
        "--model",
        &m,
        "--batch-size",
        "2",
        "--top-k",
        "all",
    ];
    let (code, out, err) = deberta_code(&args, input);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("5 of 8 lines failed: line(s) 3, 5, 6, 7, 8"),
        "{err}"
    );
    let out = lines(&out);
    assert_eq!(out.len(), 8);
    let numbered: Vec<Option<u64>> = out.iter().map(|v| v["line"].as_u64()).collect();
    assert_eq!(
        numbered,
        [
            None,
            None,
            Some(3),
            Some(5),
            Some(6),
            Some(7),
            Some(8),
            None
        ]
    );
    for good in [0, 1, 7] {
        assert_eq!(out[good].as_array().unwrap().len(), 3, "{}", out[good]);
    }
    let error = |i: usize| out[i]["error"].as_str().unwrap().to_string();
    assert!(error(2).contains("invalid UTF-8"), "{}", error(2));
    assert!(error(3).contains("malformed JSON"), "{}", error(3));
    assert!(error(4).contains("malformed JSON"), "{}", error(4));
    assert!(
        error(5).contains("unknown field `label`, expected `text` or `text_pair`"),
        "{}",
        error(5)
    );
    assert!(error(6).contains("invalid type"), "{}", error(6));

    // A job where every line is good exits 0.
    let (code, out, err) = deberta_code(
        &["classify", "--model", &m],
        b"{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines(&out).len(), 2);
}

#[test]
fn every_command_rejects_unknown_jsonl_fields_naming_them() {
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "fill-mask",
            "fill_mask",
            r#"{"text": "[MASK]", "txt": 1}"#,
            "`txt`",
        ),
        ("ner", "ner", r#"{"text": "Zoë", "lang": "fr"}"#, "`lang`"),
        ("classify", "nli", r#"{"text": "a", "pair": "b"}"#, "`pair`"),
        (
            "zero-shot",
            "nli",
            r#"{"text": "a", "labels": ["x"]}"#,
            "`labels`",
        ),
        (
            "qa",
            "qa",
            r#"{"question": "q?", "context": "c.", "id": 3}"#,
            "`id`",
        ),
        (
            "choice",
            "choice",
            r#"{"prompt": "p", "choices": ["a"], "answer": 0}"#,
            "`answer`",
        ),
    ];
    for (command, fixture, line, field) in cases {
        let m = model(fixture);
        let mut args = vec![command, "--model", &m];
        if command == "zero-shot" {
            args.extend(["--labels", "x,y"]);
        }
        let (code, out, err) = deberta_code(&args, format!("{line}\n").as_bytes());
        assert_eq!(code, Some(1), "{command}: {err}");
        let out = lines(&out);
        assert_eq!(out.len(), 1, "{command}");
        assert_eq!(out[0]["line"], 1, "{command}");
        let message = out[0]["error"].as_str().unwrap();
        assert!(
            message.contains(&format!("unknown field {field}, expected")),
            "{command}: {message}"
        );
    }
}

#[test]
fn classify_pairs_and_top_k() {
    let m = model("nli");
    let input = "{\"text\": \"A man is eating.\", \"text_pair\": \"Someone eats food.\"}\n{\"text\": \"Hello\"}\n";
    let (ok, out, err) = deberta(&["classify", "--model", &m, "--top-k", "all"], input);
    assert!(ok, "{err}");
    let out = lines(&out);
    assert_eq!(out[0].as_array().unwrap().len(), 3);
    assert_eq!(out[0][0]["label"], "neutral");
    let (ok, _, err) = deberta(
        &[
            "classify",
            "--model",
            &m,
            "--function-to-apply",
            "tanh",
            "x",
        ],
        "",
    );
    assert!(!ok && err.contains("function_to_apply"), "{err}");
}

#[test]
fn zero_shot_labels_per_line() {
    let m = model("nli");
    let input = "{\"text\": \"The match ended 3-1.\"}\n{\"text\": \"Tax rises\", \"candidate_labels\": \"politics, sports\"}\n{\"text\": \"x\", \"candidate_labels\": []}\n";
    let (ok, out, err) = deberta(
        &[
            "zero-shot",
            "--model",
            &m,
            "--labels",
            "sports,politics,cooking",
        ],
        input,
    );
    assert!(!ok && err.contains("line(s) 3"), "{err}");
    let out = lines(&out);
    assert_eq!(out[0]["labels"].as_array().unwrap().len(), 3);
    assert_eq!(out[1]["labels"].as_array().unwrap().len(), 2);
    assert!(out[2]["error"]
        .as_str()
        .unwrap()
        .contains("candidate_labels"));
}

#[test]
fn zero_shot_in_int8_and_bf16_gives_a_distribution_close_to_f32() {
    let m = model("nli");
    let run = |dtype: &str| {
        let (ok, out, err) = deberta(
            &[
                "zero-shot",
                "--model",
                &m,
                "--labels",
                "sports,politics,cooking",
                "--dtype",
                dtype,
                "The match ended 3-1.",
            ],
            "",
        );
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let mut scores: Vec<(String, f64)> = v["labels"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["scores"].as_array().unwrap())
            .map(|(l, s)| (l.as_str().unwrap().to_string(), s.as_f64().unwrap()))
            .collect();
        scores.sort_by(|a, b| a.0.cmp(&b.0));
        scores
    };
    let f32_scores = run("f32");
    for dtype in ["int8", "bf16"] {
        let scores = run(dtype);
        let total: f64 = scores.iter().map(|s| s.1).sum();
        assert!((total - 1.0).abs() < 1e-5, "{dtype}: {scores:?}");
        let worst = f32_scores
            .iter()
            .zip(&scores)
            .map(|(a, b)| (a.1 - b.1).abs())
            .fold(0.0, f64::max);
        println!("zero-shot {dtype} vs f32: max |score diff| = {worst:.2e}");
        assert!(worst < 0.05, "{f32_scores:?} vs {dtype} {scores:?}");
    }
}

#[test]
fn ner_windows_and_offsets() {
    let m = model("ner");
    let text = "Angela Merkel met Emmanuel Macron in Berlin on Monday. The European Union and Siemens AG announced a partnership in München, while Zoë visited the Louvre in Paris with friends from São Paulo.";
    let (ok, out, err) = deberta(
        &[
            "ner",
            "--model",
            &m,
            "--aggregation",
            "simple",
            "--stride",
            "8",
            text,
        ],
        "",
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let chars: Vec<char> = text.chars().collect();
    for e in v.as_array().unwrap() {
        let (s, t) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        assert!(s < t && t <= chars.len());
    }
    assert_eq!(
        v.as_array().unwrap().last().unwrap()["end"],
        chars.len() as u64
    );
    let (ok, _, err) = deberta(&["ner", "--model", &m, "--stride", "4", "x y"], "");
    assert!(!ok && err.contains("stride"), "{err}");
}

#[test]
fn qa_long_context_and_bad_question() {
    let m = model("qa");
    let context = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the engineer Gustave Eiffel.";
    let (ok, out, err) = deberta(
        &[
            "qa",
            "--model",
            &m,
            "--question",
            "Where?",
            "--context",
            context,
            "--max-seq-len",
            "24",
            "--doc-stride",
            "8",
            "--top-k",
            "2",
        ],
        "",
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    for a in v.as_array().unwrap() {
        let (s, e) = (
            a["start"].as_u64().unwrap() as usize,
            a["end"].as_u64().unwrap() as usize,
        );
        let expect: String = context.chars().skip(s).take(e - s).collect();
        assert_eq!(a["answer"], expect.as_str());
    }
    let long_q =
        "What is the name of the very tall iron tower that stands in the middle of Paris today?";
    let input = format!("{{\"question\": \"{long_q}\", \"context\": \"Paris.\"}}\n{{\"question\": \"Who?\", \"context\": \"Zoë.\"}}\n");
    let (ok, out, err) = deberta(&["qa", "--model", &m, "--max-seq-len", "16"], &input);
    assert!(!ok && err.contains("line(s) 1"), "{err}");
    let out = lines(&out);
    assert!(
        out[0]["error"].as_str().unwrap().contains("`question`"),
        "{}",
        out[0]
    );
    assert_eq!(out[1]["answer"], "Zoë.");
}

#[test]
fn choice_and_hub_errors() {
    let m = model("choice");
    let (ok, out, err) = deberta(
        &[
            "choice",
            "--model",
            &m,
            "--prompt",
            "It is cold, so I wear",
            "--choice",
            "a coat.",
            "--choice",
            "sandals.",
        ],
        "",
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let total: f64 = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["score"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-6);
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args([
            "choice",
            "--model",
            "nobody/no-such-model",
            "--prompt",
            "p",
            "--choice",
            "c",
        ])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", tmp.path())
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nobody/no-such-model")
            && err.contains(tmp.path().join("hub").to_str().unwrap()),
        "{err}"
    );
}
