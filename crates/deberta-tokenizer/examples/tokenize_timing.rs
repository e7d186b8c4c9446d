//! Best-of-N timing of one pass over the parity corpus (robust to a noisy machine), for
//! comparison with `benchmarks/tokenizer_compare.py`:
//! `cargo run --release -p deberta-tokenizer --example tokenize_timing`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use deberta_tokenizer::{Impl, SentencePiece, Tokenizer};

fn best_of(n: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = f64::MAX;
    let mut sink = 0;
    for _ in 0..n {
        let t = Instant::now();
        sink += f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("expected/deberta-v3.json"),
    )?)?;
    let texts: Vec<String> = json["slow"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["text"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let bytes: usize = texts.iter().map(String::len).sum();
    let dir = root.join("deberta-v3");
    let spm = SentencePiece::from_file(dir.join("spm.model"))?;
    let slow = Tokenizer::from_dir_with(&dir, Impl::Slow)?;
    let fast = Tokenizer::from_dir_with(&dir, Impl::Fast)?;
    println!("corpus: {} texts, {bytes} bytes", texts.len());
    let report = |name: &str, s: f64| {
        println!(
            "{name:40} {:10.1} us/pass {:8.2} MiB/s",
            s * 1e6,
            bytes as f64 / s / 1048576.0
        )
    };
    report(
        "rust spm encode (pieces+offsets)",
        best_of(
            std::env::var("SPM_N")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(300),
            || texts.iter().map(|t| spm.encode(t).len()).sum(),
        ),
    );
    report(
        "rust slow tokenize",
        best_of(300, || {
            texts
                .iter()
                .map(|t| slow.encode_raw(t).map_or(0, |e| e.len()))
                .sum()
        }),
    );
    report(
        "rust fast tokenize",
        best_of(100, || {
            texts
                .iter()
                .map(|t| fast.encode_raw(t).map_or(0, |e| e.len()))
                .sum()
        }),
    );
    Ok(())
}
