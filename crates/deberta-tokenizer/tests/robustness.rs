//! Deterministic pseudo-random text through every fixture tokenizer: no panics, offsets
//! inside the text, windows within max_length (a cheap stand-in for the cargo-fuzz targets).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use deberta_tokenizer::{
    EncodeOptions, Impl, Padding, PaddingStrategy, SentencePiece, Side, Tokenizer, Truncation,
    TruncationStrategy,
};

const POOL: &[&str] = &[
    "a",
    "Z",
    "é",
    "e\u{301}",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\u{0}",
    "\u{7f}",
    "\u{200b}",
    "\u{200d}",
    "\u{feff}",
    "\u{a0}",
    "你",
    "한",
    "ש",
    "م",
    "क्",
    "ไ",
    "😀",
    "👩\u{200d}👧",
    "🏳\u{fe0f}",
    "𩸽",
    "\u{e000}",
    "\u{fffd}",
    "\u{10ffff}",
    "[MASK]",
    "[CLS",
    "]",
    "[SEP]",
    "…",
    "ﬁ",
    "Ａ",
    ".",
    ",",
    "'",
    "!",
    "İ",
    "ẞ",
    "Σ",
    "<mytok>",
    "1",
    "½",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

fn random_text(rng: &mut Lcg) -> String {
    let n = rng.next() % 24;
    (0..n).map(|_| POOL[rng.next() % POOL.len()]).collect()
}

fn dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = vec![root.join("deberta-v3")];
    for m in ["unigram-lower", "unigram-punct", "bpe", "unigram-nobyte"] {
        out.push(root.join("models").join(m));
    }
    out
}

fn check(tok: &Tokenizer, a: &str, b: &str, rng: &mut Lcg) {
    let max_length = 5 + rng.next() % 12;
    let opts = EncodeOptions {
        add_special_tokens: !rng.next().is_multiple_of(4),
        truncation: Some(Truncation {
            max_length,
            strategy: [
                TruncationStrategy::LongestFirst,
                TruncationStrategy::OnlyFirst,
                TruncationStrategy::OnlySecond,
            ][rng.next() % 3],
            stride: rng.next() % 3,
            side: if rng.next().is_multiple_of(2) {
                Side::Left
            } else {
                Side::Right
            },
        }),
        padding: Padding {
            strategy: PaddingStrategy::Longest,
            side: Side::Left,
            pad_to_multiple_of: Some(4),
        },
    };
    let (na, nb) = (a.chars().count(), b.chars().count());
    let single = tok.encode(a, None, &EncodeOptions::default()).unwrap();
    for &(s, e) in &single.offsets {
        assert!(
            s <= e && e <= na,
            "{a:?}: offset ({s}, {e}) outside {na} chars"
        );
    }
    tok.decode(&single.input_ids, true).unwrap();
    tok.decode(&single.input_ids, false).unwrap();
    // Truncation may legitimately fail (too short to truncate); it must not panic.
    if let Ok(enc) = tok.encode(a, Some(b), &opts) {
        for w in std::iter::once(&enc).chain(enc.overflowing.iter()) {
            assert_eq!(w.input_ids.len() % 4, 0);
            for (k, &(s, e)) in w.offsets.iter().enumerate() {
                let limit = if w.sequence_ids[k] == Some(1) { nb } else { na };
                assert!(s <= e && e <= limit);
            }
            tok.decode(&w.input_ids, true).unwrap();
        }
    }
}

#[test]
fn random_text_never_panics() {
    let mut rng = Lcg(42);
    for dir in dirs() {
        for which in [Impl::Slow, Impl::Fast] {
            let tok = Tokenizer::from_dir_with(&dir, which).unwrap();
            for _ in 0..120 {
                let a = random_text(&mut rng);
                let b = random_text(&mut rng);
                check(&tok, &a, &b, &mut rng);
            }
        }
    }
}

/// Mutated and truncated `spm.model` bytes (a stand-in for the `spm_model` fuzz target):
/// parsing gives a model or an error, and a model encodes and decodes, never panicking.
#[test]
fn mutated_spm_models_never_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let mut rng = Lcg(7);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for (name, cuts, flips) in [("bpe", 300, 1500), ("unigram-nobyte", 40, 200)] {
        let seed = std::fs::read(root.join(name).join("spm.model")).unwrap();
        for k in 0..cuts {
            corpus.push(seed[..seed.len() * k / cuts].to_vec());
        }
        for _ in 0..flips {
            let mut m = seed.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = if rng.next().is_multiple_of(2) {
                    rng.next() % m.len().min(4096)
                } else {
                    rng.next() % m.len()
                };
                m[at] ^= (1 + rng.next() % 255) as u8;
            }
            corpus.push(m);
        }
    }
    for _ in 0..2000 {
        let n = rng.next() % 64;
        corpus.push((0..n).map(|_| (rng.next() % 256) as u8).collect());
    }
    let mut models = 0;
    for bytes in corpus {
        if let Ok(spm) = SentencePiece::from_bytes(bytes) {
            models += 1;
            let pieces = spm.encode("Hello wörld 𩸽  [MASK] 你好 \u{0} ﬁ …");
            let strings: Vec<String> = pieces.into_iter().map(|p| p.piece.into_owned()).collect();
            let _ = spm.decode_pieces(&strings);
        }
    }
    assert!(models > 100, "only {models} mutated models parsed");
}
