//! Slow (pure-Rust sentencepiece) vs fast (`tokenizers`) DeBERTa-v3 tokenization on the parity
//! corpus, one thread. `cargo bench -p deberta-tokenizer`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deberta_tokenizer::{Impl, SentencePiece, Tokenizer};

fn corpus() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(root.join("expected/deberta-v3.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json["slow"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["text"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deberta-v3");
    let texts = corpus();
    let bytes: usize = texts.iter().map(String::len).sum();
    let (Ok(slow), Ok(fast), Ok(spm)) = (
        Tokenizer::from_dir_with(&dir, Impl::Slow),
        Tokenizer::from_dir_with(&dir, Impl::Fast),
        SentencePiece::from_file(dir.join("spm.model")),
    ) else {
        eprintln!("fixtures missing; skipping");
        return;
    };
    let mut g = c.benchmark_group("deberta_v3_corpus");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("cpu_spm_encode", |b| {
        b.iter(|| texts.iter().map(|t| spm.encode(t).len()).sum::<usize>())
    });
    for (name, tok) in [("cpu_slow_tokenize", &slow), ("cpu_fast_tokenize", &fast)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                texts
                    .iter()
                    .map(|t| tok.encode_raw(t).map_or(0, |e| e.len()))
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
