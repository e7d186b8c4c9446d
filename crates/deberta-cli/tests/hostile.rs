//! The issue-23 reproductions on the `deberta` command, each run under a 6 GB address-space
//! limit (setrlimit in the child): every one must exit 1 or 2 with a message naming what is at
//! fault, never abort or die on a signal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Runs the command under RLIMIT_AS = 6 GB (unix), with `stdin` as its input.
fn limited(args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deberta"));
    cmd.args(args).env("RAYON_NUM_THREADS", "2");
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 6_000_000_000,
                    rlim_max: 6_000_000_000,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.output().unwrap()
}

/// Asserts exit code 1 or 2 (not a signal) and that stderr contains every `needle`.
fn fails_with(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{stderr}");
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "status {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` not in: {stderr}");
    }
    stderr
}

#[test]
fn forward_on_100000_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.json");
    let ids = vec![5u32; 100_000];
    std::fs::write(
        &input,
        serde_json::json!({ "input_ids": [ids] }).to_string(),
    )
    .unwrap();
    let model = fixtures().join("models/v3_buckets");
    let out = limited(
        &[
            "forward",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            tmp.path().join("o.safetensors").to_str().unwrap(),
        ],
        None,
    );
    fails_with(&out, &["1 x 100000 tokens", "memory limit"]);
}

#[test]
fn a_100000_word_jsonl_line_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let long = vec!["word"; 100_000].join(" ");
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n{}\n",
            serde_json::json!({"text": "a good line"}),
            serde_json::json!({ "text": long }),
            serde_json::json!({"text": "another good line"}),
        ),
    )
    .unwrap();
    let model = fixtures().join("tasks/nli");
    let out = limited(
        &[
            "classify",
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        None,
    );
    fails_with(&out, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("memory limit"), "{stdout}");
    assert!(
        stdout.contains("\"label\""),
        "the good lines are printed: {stdout}"
    );
}

#[test]
fn bench_with_a_million_tokens() {
    let model = fixtures().join("models/v3_buckets");
    for extra in [
        &["--seq", "1000000"][..],
        &["--batch", "1000000", "--seq", "1000000"],
    ] {
        let mut args = vec!["bench", "--model", model.to_str().unwrap(), "--iters", "1"];
        args.extend_from_slice(extra);
        let out = limited(&args, None);
        fails_with(&out, &["tokens", "memory limit"]);
    }
}

#[test]
fn absurd_threads_and_memory_flags() {
    let model = fixtures().join("models/v3_buckets");
    let out = limited(
        &[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--threads",
            "100000",
        ],
        None,
    );
    fails_with(&out, &["--threads", "over the limit"]);
    let out = limited(
        &[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--max-memory",
            "lots",
        ],
        None,
    );
    fails_with(&out, &["--max-memory"]);
}

#[test]
fn a_billion_labels_in_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("tasks/nli");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = tmp.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["num_labels"] = 1_000_000_000u64.into();
    cfg.as_object_mut().unwrap().remove("id2label");
    cfg.as_object_mut().unwrap().remove("label2id");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let out = limited(
        &["classify", "--model", tmp.path().to_str().unwrap(), "hello"],
        None,
    );
    let stderr = fails_with(&out, &["num_labels", "config.json"]);
    assert_eq!(
        stderr.matches("implausibly").count(),
        1,
        "said once: {stderr}"
    );
}

#[test]
fn zero_shot_labels_as_transformers_splits_them() {
    let model = fixtures().join("tasks/nli");
    for labels in ["", ",,,", " , "] {
        let out = limited(
            &[
                "zero-shot",
                "--model",
                model.to_str().unwrap(),
                "--labels",
                labels,
                "hi",
            ],
            None,
        );
        fails_with(&out, &["--labels", "no label"]);
    }
    let out = limited(
        &[
            "zero-shot",
            "--model",
            model.to_str().unwrap(),
            "--labels",
            "a, b,",
            "hi",
        ],
        None,
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut got: Vec<String> = v["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["a", "b"]);
}
