//! Property tests (proptest) over the tokenizer file readers: any byte string, a valid file with
//! random damage, or a structurally valid file with random field values gives `Ok` or a named
//! [`Error`], never a panic, within bounded memory and time. When a file loads, encoding and
//! decoding a few texts does not panic either.
//!
//! * `spm.model` (`SentencePiece::from_bytes`, then the slow tokenizer and the conversion to
//!   the fast one);
//! * `tokenizer.json` (`FastTokenizer::from_dir`, through the HF `tokenizers` crate; a panic it
//!   catches there is the named `Error::FastPanicked`).
//!
//! Runs are deterministic (a fixed seed per property); `PROPTEST_RNG_SEED=<n>` picks another
//! seed and `PROPTEST_CASES=<n>` more cases. Each property runs in a child process under a
//! 1 GiB address-space limit (`isolate.rs` of the `deberta` crate's tests), so an abort, a stack
//! overflow or a runaway allocation fails that property instead of the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../deberta/tests/common/isolate.rs"]
mod isolate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deberta_tokenizer::{
    EncodeOptions, Error, FastTokenizer, SentencePiece, Side, SlowTokenizer, Tokenizer,
    TokenizerConfig, Truncation, TruncationStrategy,
};
use isolate::isolated;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::Value;

const LIMIT: u64 = 1 << 30;
/// Per case, in a debug build on a loaded machine; a hang or a quadratic blow-up is far above.
const CASE_TIME: Duration = Duration::from_secs(20);

/// Runs `test` on `cases` values of `strategy` (more with `PROPTEST_CASES`), from a fixed seed
/// unless `PROPTEST_RNG_SEED` is set; a failure (a panic included) is shrunk and reported.
fn check<S: Strategy>(
    seed: u64,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let config = Config {
        cases: env("PROPTEST_CASES").map_or(cases, |n| n as u32),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(seed)),
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    // Panics that `tokenizers` raises and the crate catches (`FastPanicked`) would print a
    // message and a backtrace each; `isolate.rs` reads the child's output only when it exits,
    // so enough of them fill the pipe and block the child. proptest reports a failing panic
    // with its message itself.
    std::panic::set_hook(Box::new(|_| {}));
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Byte-level damage

/// One edit of a byte string; positions are fractions of its current length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// A protobuf varint or a little-endian 4-byte value written over the bytes at a position.
    Varint(Index, u64),
    Word(Index, u32),
}

fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        (0u32..64).prop_map(|s| 1u64 << s),
        (0u32..64).prop_map(|s| u64::MAX >> s),
        0u64..300,
        any::<u64>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Edit::Flip(i, m)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), edgy_u64()).prop_map(|(i, v)| Edit::Varint(i, v)),
        1 => (any::<Index>(), edgy_u64()).prop_map(|(i, v)| Edit::Word(i, v as u32)),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..5)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn damage(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    let at = |i: &Index, data: &Vec<u8>| i.index(data.len() + 1);
    for e in edits {
        match e {
            Edit::Flip(i, m) if !data.is_empty() => {
                let p = i.index(data.len());
                data[p] ^= m;
            }
            Edit::Insert(i, b) => {
                let p = at(i, &data);
                data.splice(p..p, b.iter().copied());
            }
            Edit::Delete(i, n) => {
                let p = at(i, &data);
                let end = (p + n).min(data.len());
                data.drain(p..end);
            }
            Edit::Truncate(i) => data.truncate(at(i, &data)),
            Edit::Varint(i, v) => {
                let mut b = Vec::new();
                varint(&mut b, *v);
                let p = at(i, &data);
                let end = (p + b.len()).min(data.len());
                data.splice(p..end, b);
            }
            Edit::Word(i, v) => {
                let p = at(i, &data);
                let end = (p + 4).min(data.len());
                data.splice(p..end, v.to_le_bytes());
            }
            Edit::Flip(..) => {}
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// What a loaded tokenizer is put through

const TEXTS: &[&str] = &[
    "",
    " ",
    "Hello [MASK] world!",
    "  a\tb\n\u{0}c  ",
    "e\u{301}\u{200b}\u{feff}你한😀𩸽\u{10ffff}",
    "<unk> <s> [CLS] ▁▁",
];

/// Counts of outcomes over a property, printed at the end (a caught panic of `tokenizers` is a
/// named error, but worth seeing).
static LOADED: AtomicUsize = AtomicUsize::new(0);
static CAUGHT_PANICS: AtomicUsize = AtomicUsize::new(0);

fn note(e: &Error) {
    assert!(!e.to_string().is_empty());
    if matches!(e, Error::FastPanicked { .. }) {
        CAUGHT_PANICS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Encodes (single, pair, truncated with overflow) and decodes `texts` plus `extra`; every call
/// gives a value or a named error.
fn exercise(tok: &Tokenizer, extra: &str) {
    LOADED.fetch_add(1, Ordering::Relaxed);
    let truncated = EncodeOptions {
        truncation: Some(Truncation {
            max_length: 6,
            strategy: TruncationStrategy::LongestFirst,
            stride: 1,
            side: Side::Right,
        }),
        ..EncodeOptions::default()
    };
    for text in TEXTS.iter().copied().chain([extra]) {
        match tok.encode(text, Some(extra), &EncodeOptions::default()) {
            Ok(enc) => {
                if let Err(e) = tok.decode(&enc.input_ids, false) {
                    note(&e);
                }
            }
            Err(e) => note(&e),
        }
        if let Err(e) = tok.encode(text, None, &truncated) {
            note(&e);
        }
        if let Err(e) = tok.tokenize(text) {
            note(&e);
        }
    }
    for id in [0, 1, 3, 255, 1000, u32::MAX] {
        if let Err(e) = tok.id_to_token(id) {
            note(&e);
        }
        if let Err(e) = tok.decode(&[id, 0, id], true) {
            note(&e);
        }
    }
}

fn report(name: &str) {
    println!(
        "{name}: {} tokenizers loaded; {} panics of `tokenizers` caught as FastPanicked",
        LOADED.load(Ordering::Relaxed),
        CAUGHT_PANICS.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------------
// spm.model

/// Loads `bytes` as `spm.model`: `Ok`, or one of the sentencepiece errors. When it loads,
/// encodes with the model and the slow tokenizer, and converts to the fast one when the
/// vocabulary is small (the conversion of 128k pieces is slow in a debug build).
fn exercise_spm(bytes: Vec<u8>, extra: &str) -> Result<(), TestCaseError> {
    let started = Instant::now();
    match SentencePiece::from_bytes(bytes) {
        Err(e) => prop_assert!(
            matches!(
                e,
                Error::SpmProto { .. }
                    | Error::SpmDecode(_)
                    | Error::SpmModel(_)
                    | Error::Charsmap(_)
            ),
            "unexpected error kind: {e}"
        ),
        Ok(spm) => {
            for text in TEXTS.iter().copied().chain([extra]) {
                let pieces = spm.encode(text);
                for p in &pieces {
                    prop_assert!(p.begin <= p.end && p.end <= text.len(), "{p:?} in {text:?}");
                }
                let strs: Vec<&str> = pieces.iter().map(|p| p.piece.as_ref()).collect();
                spm.decode_pieces(&strs);
            }
            let small = spm.len() <= 5000;
            match SlowTokenizer::new(spm.clone(), TokenizerConfig::default()) {
                Ok(slow) => exercise(&Tokenizer::Slow(Box::new(slow)), extra),
                Err(e) => note(&e),
            }
            if small {
                match FastTokenizer::from_spm(&spm, TokenizerConfig::default()) {
                    Ok(fast) => exercise(&Tokenizer::Fast(Box::new(fast)), extra),
                    Err(e) => note(&e),
                }
            }
        }
    }
    prop_assert!(
        started.elapsed() < CASE_TIME,
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
        Just("▁a▁b <0x41>".to_string()),
    ]
}

#[test]
fn spm_random_bytes() {
    isolated("spm_random_bytes", LIMIT, || {
        let bytes = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            // A ModelProto-looking start: field 1 (pieces), length-delimited.
            prop::collection::vec(any::<u8>(), 0..512).prop_map(|b| {
                let mut out = vec![0x0a, (b.len() % 128) as u8];
                out.extend(b);
                out
            }),
        ];
        check(1, 512, (bytes, text()), |(b, t)| exercise_spm(b, &t));
        report("spm_random_bytes");
    });
}

/// The small fixture models (BPE; unigram without byte pieces) with random damage.
#[test]
fn spm_damaged_small_models() {
    isolated("spm_damaged_small_models", LIMIT, || {
        let models: Vec<Vec<u8>> = ["bpe", "unigram-nobyte"]
            .iter()
            .map(|m| read(fixtures().join("models").join(m).join("spm.model")))
            .collect();
        let strategy = (0..models.len(), edits(), text());
        check(2, 192, strategy, |(m, e, t)| {
            exercise_spm(damage(models[m].clone(), &e), &t)
        });
        report("spm_damaged_small_models");
    });
}

/// The real DeBERTa-v3 `spm.model` (2.4 MB, 128k pieces) with random damage: fewer cases, each
/// loads the whole vocabulary.
#[test]
fn spm_damaged_real_model() {
    isolated("spm_damaged_real_model", LIMIT, || {
        let model = read(fixtures().join("deberta-v3/spm.model"));
        check(3, 16, (edits(), text()), |(e, t)| {
            exercise_spm(damage(model.clone(), &e), &t)
        });
        report("spm_damaged_real_model");
    });
}

// Structured: a well-formed protobuf whose fields take random (often invalid) values, so that
// the checks after decoding (piece types, model type, `<unk>`, byte pieces, charsmap) are
// reached, not only the wire-format decoder.

#[derive(Debug, Clone)]
struct PieceSpec {
    piece: Option<Vec<u8>>,
    score: Option<f32>,
    kind: Option<u64>,
}

#[derive(Debug, Clone)]
struct TrainerSpecG {
    model_type: Option<u64>,
    treat_whitespace_as_suffix: Option<bool>,
    byte_fallback: Option<bool>,
    unk_surface: Option<String>,
    unk_piece: Option<String>,
}

#[derive(Debug, Clone)]
struct NormalizerSpecG {
    name: Option<String>,
    charsmap: Option<Vec<u8>>,
    flags: [Option<bool>; 3],
}

#[derive(Debug, Clone)]
struct ModelG {
    unk_first: bool,
    byte_pieces: bool,
    pieces: Vec<PieceSpec>,
    trainer: Option<TrainerSpecG>,
    normalizer: Option<NormalizerSpecG>,
    /// An unknown field appended at the top level (must be skipped).
    unknown: Option<(u32, Vec<u8>)>,
}

const PIECES: &[&str] = &[
    "<unk>", "<s>", "</s>", "[MASK]", "[CLS]", "[SEP]", "[PAD]", "▁", "▁▁", "▁a", "a", "b", "ab",
    "▁ab", "<0x41>", "<0x00>", "<0xFF>", "<0x1>", "", " ", "é", "\u{0}", "你", "😀", ".",
];

fn piece_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(PIECES).prop_map(|s| s.as_bytes().to_vec()),
        2 => "\\PC{1,4}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ]
}

fn score() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -20f32..0.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => any::<f32>(),
    ]
}

fn piece() -> impl Strategy<Value = PieceSpec> {
    (
        prop::option::weighted(0.95, piece_text()),
        prop::option::weighted(0.9, score()),
        prop::option::weighted(
            0.7,
            prop_oneof![8 => 1u64..=6, 1 => Just(0u64), 1 => edgy_u64()],
        ),
    )
        .prop_map(|(piece, score, kind)| PieceSpec { piece, score, kind })
}

/// A precompiled charsmap: random bytes, or a trie size, trie units and a replacement blob.
fn charsmap() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            prop_oneof![Just(None), Just(Some(u32::MAX)), (0u32..80).prop_map(Some)],
            prop::collection::vec(any::<u32>(), 0..16),
            prop::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(|(size, units, tail)| {
                let size = size.unwrap_or(units.len() as u32 * 4);
                let mut out = size.to_le_bytes().to_vec();
                out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
                out.extend(tail);
                out
            }),
    ]
}

fn model() -> impl Strategy<Value = ModelG> {
    let short = || prop::option::of("\\PC{0,4}");
    let trainer = (
        prop::option::of(prop_oneof![4 => 1u64..=4, 1 => Just(0u64), 1 => edgy_u64()]),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        short(),
        prop::option::of(prop_oneof![
            Just("<unk>".to_string()),
            Just("a".into()),
            Just("".into())
        ]),
    )
        .prop_map(|(m, s, b, surface, unk)| TrainerSpecG {
            model_type: m,
            treat_whitespace_as_suffix: s,
            byte_fallback: b,
            unk_surface: surface,
            unk_piece: unk,
        });
    let normalizer = (
        short(),
        prop::option::weighted(0.5, charsmap()),
        [
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
        ],
    )
        .prop_map(|(name, charsmap, flags)| NormalizerSpecG {
            name,
            charsmap,
            flags,
        });
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.3),
        prop::collection::vec(piece(), 0..24),
        prop::option::weighted(0.8, trainer),
        prop::option::weighted(0.6, normalizer),
        prop::option::weighted(0.2, (4u32..100, prop::collection::vec(any::<u8>(), 0..8))),
    )
        .prop_map(
            |(unk_first, byte_pieces, pieces, trainer, normalizer, unknown)| ModelG {
                unk_first,
                byte_pieces,
                pieces,
                trainer,
                normalizer,
                unknown,
            },
        )
}

fn field_bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    varint(out, u64::from(field) << 3 | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, v);
}

fn encode_model(m: &ModelG) -> Vec<u8> {
    let mut pieces: Vec<PieceSpec> = Vec::new();
    if m.unk_first {
        pieces.push(PieceSpec {
            piece: Some(b"<unk>".to_vec()),
            score: Some(0.0),
            kind: Some(2),
        });
    }
    pieces.extend(m.pieces.iter().cloned());
    if m.byte_pieces {
        pieces.extend((0..=255u8).map(|b| PieceSpec {
            piece: Some(format!("<0x{b:02X}>").into_bytes()),
            score: Some(0.0),
            kind: Some(6),
        }));
    }
    let mut out = Vec::new();
    for p in &pieces {
        let mut msg = Vec::new();
        if let Some(s) = &p.piece {
            field_bytes(&mut msg, 1, s);
        }
        if let Some(score) = p.score {
            varint(&mut msg, 2 << 3 | 5);
            msg.extend_from_slice(&score.to_le_bytes());
        }
        if let Some(k) = p.kind {
            field_varint(&mut msg, 3, k);
        }
        field_bytes(&mut out, 1, &msg);
    }
    if let Some(t) = &m.trainer {
        let mut msg = Vec::new();
        if let Some(v) = t.model_type {
            field_varint(&mut msg, 3, v);
        }
        if let Some(v) = t.treat_whitespace_as_suffix {
            field_varint(&mut msg, 24, v.into());
        }
        if let Some(v) = t.byte_fallback {
            field_varint(&mut msg, 35, v.into());
        }
        if let Some(v) = &t.unk_surface {
            field_bytes(&mut msg, 44, v.as_bytes());
        }
        if let Some(v) = &t.unk_piece {
            field_bytes(&mut msg, 45, v.as_bytes());
        }
        field_bytes(&mut out, 2, &msg);
    }
    if let Some(n) = &m.normalizer {
        let mut msg = Vec::new();
        if let Some(v) = &n.name {
            field_bytes(&mut msg, 1, v.as_bytes());
        }
        if let Some(v) = &n.charsmap {
            field_bytes(&mut msg, 2, v);
        }
        for (i, f) in n.flags.iter().enumerate() {
            if let Some(v) = f {
                field_varint(&mut msg, 3 + i as u32, (*v).into());
            }
        }
        field_bytes(&mut out, 3, &msg);
    }
    if let Some((field, data)) = &m.unknown {
        field_bytes(&mut out, *field, data);
    }
    out
}

#[test]
fn spm_structured_models() {
    isolated("spm_structured_models", LIMIT, || {
        check(4, 512, (model(), text()), |(m, t)| {
            exercise_spm(encode_model(&m), &t)
        });
        report("spm_structured_models");
    });
}

/// The real model's precompiled charsmap (the nmt_nfkc rules) with random damage, in a model
/// of a few pieces.
#[test]
fn spm_damaged_charsmap() {
    isolated("spm_damaged_charsmap", LIMIT, || {
        let real = SentencePiece::from_bytes(read(fixtures().join("deberta-v3/spm.model")))
            .unwrap()
            .proto()
            .normalizer_spec
            .precompiled_charsmap
            .clone();
        assert!(!real.is_empty());
        let base = ModelG {
            unk_first: true,
            byte_pieces: true,
            pieces: ["▁a", "a", "b", "▁", "é"]
                .iter()
                .map(|p| PieceSpec {
                    piece: Some(p.as_bytes().to_vec()),
                    score: Some(-1.0),
                    kind: None,
                })
                .collect(),
            trainer: None,
            normalizer: None,
            unknown: None,
        };
        check(5, 96, (edits(), text()), |(e, t)| {
            let mut m = base.clone();
            m.normalizer = Some(NormalizerSpecG {
                name: None,
                charsmap: Some(damage(real.clone(), &e)),
                flags: [None; 3],
            });
            exercise_spm(encode_model(&m), &t)
        });
        report("spm_damaged_charsmap");
    });
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

/// Small valid `tokenizer.json` files made at test time from the fixtures: the DeBERTa-v3 one
/// (unigram) cut to 300 pieces, without its 300 KB charsmap; and the one converted from the
/// BPE fixture model.
fn json_seeds() -> Vec<Value> {
    let mut v3: Value =
        serde_json::from_slice(&read(fixtures().join("deberta-v3/tokenizer.json"))).unwrap();
    let vocab = v3["model"]["vocab"].as_array().unwrap();
    let cut: Vec<Value> = vocab[..4].iter().chain(&vocab[260..556]).cloned().collect();
    let n = cut.len();
    v3["model"]["vocab"] = Value::Array(cut);
    for t in v3["added_tokens"].as_array_mut().unwrap() {
        if t["content"] == "[MASK]" {
            t["id"] = n.into();
        }
    }
    let norms = v3["normalizer"]["normalizers"].as_array_mut().unwrap();
    norms.retain(|n| n["type"] != "Precompiled");
    let spm = SentencePiece::from_file(fixtures().join("models/bpe/spm.model")).unwrap();
    let config = TokenizerConfig::from_dir(fixtures().join("models/bpe")).unwrap();
    let bpe = FastTokenizer::from_spm(&spm, config).unwrap();
    let bpe: Value = serde_json::from_str(&bpe.inner().to_string(false).unwrap()).unwrap();
    vec![v3, bpe]
}

/// Writes `bytes` as `tokenizer.json` (with the DeBERTa-v3 configuration files) and loads it:
/// `Ok`, or a named error of the JSON, the `tokenizers` library (a caught panic included) or
/// the special tokens.
fn exercise_json(dir: &Path, bytes: &[u8], extra: &str) -> Result<(), TestCaseError> {
    let started = Instant::now();
    std::fs::write(dir.join("tokenizer.json"), bytes).unwrap();
    match FastTokenizer::from_dir(dir) {
        Ok(fast) => exercise(&Tokenizer::Fast(Box::new(fast)), extra),
        Err(e) => {
            note(&e);
            prop_assert!(
                matches!(
                    e,
                    Error::Io { .. }
                        | Error::Fast { .. }
                        | Error::FastPanicked { .. }
                        | Error::MissingSpecialToken { .. }
                ),
                "unexpected error kind: {e}"
            );
        }
    }
    prop_assert!(
        started.elapsed() < CASE_TIME,
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
    ] {
        std::fs::copy(fixtures().join("deberta-v3").join(f), dir.path().join(f)).unwrap();
    }
    dir
}

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "3",
    "\"type\"",
    "\"model\"",
    "\"vocab\"",
    "\"merges\"",
    "\"Unigram\"",
    "\"BPE\"",
    "\"WordPiece\"",
    "\"unk_id\"",
    "\"normalizer\"",
    "\"pre_tokenizer\"",
    "\"decoder\"",
    "\"post_processor\"",
    "\"added_tokens\"",
    "\"Sequence\"",
    "\"Replace\"",
    "\"pattern\"",
    "\"Regex\"",
    "\"(\"",
    "\"[CLS]\"",
    "\"id\"",
    "\"content\"",
    "\"Metaspace\"",
    "\"TemplateProcessing\"",
];

#[test]
fn tokenizer_json_random_bytes() {
    isolated("tokenizer_json_random_bytes", LIMIT, || {
        let dir = config_dir();
        let bytes = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            prop::collection::vec(prop::sample::select(JSON_TOKENS), 0..64)
                .prop_map(|t| t.concat().into_bytes()),
        ];
        check(6, 384, (bytes, text()), |(b, t)| {
            exercise_json(dir.path(), &b, &t)
        });
        report("tokenizer_json_random_bytes");
    });
}

#[test]
fn tokenizer_json_damaged_bytes() {
    isolated("tokenizer_json_damaged_bytes", LIMIT, || {
        let dir = config_dir();
        let seeds: Vec<Vec<u8>> = json_seeds()
            .iter()
            .map(|v| v.to_string().into_bytes())
            .collect();
        assert!(seeds.iter().all(|s| s.len() < 64 << 10), "seeds stay small");
        check(7, 192, (0..seeds.len(), edits(), text()), |(s, e, t)| {
            exercise_json(dir.path(), &damage(seeds[s].clone(), &e), &t)
        });
        report("tokenizer_json_damaged_bytes");
    });
}

/// One change to a JSON document: the value at one node (picked among all nodes, in document
/// order) is replaced, removed, or given an unknown key.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Index, Value),
    Remove(Index),
    AddKey(Index, String, Value),
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        edgy_u64().prop_map(Value::from),
        prop_oneof![
            Just(-1i64),
            Just(i64::MIN),
            Just(-1_000_000_000i64),
            Just(1_000_000_000i64)
        ]
        .prop_map(Value::from),
        prop_oneof![Just(-0.5f64), Just(1e300), Just(-1e-300), Just(0.5)].prop_map(Value::from),
        prop::sample::select(JSON_TOKENS).prop_map(|t| Value::from(t.trim_matches('"'))),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    let nested = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    });
    prop_oneof![
        8 => nested,
        // Nesting past serde_json's recursion limit (128).
        1 => (100usize..400).prop_map(|depth| {
            (0..depth).fold(Value::Null, |v, _| Value::Array(vec![v]))
        }),
    ]
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<Index>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), "[a-z_]{1,10}", json_value())
            .prop_map(|(i, k, v)| JsonEdit::AddKey(i, k, v)),
    ]
}

/// JSON pointers to every node of `v` except inside long arrays past their 8th element (so that
/// edits land on the structure more often than on vocabulary entries).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(8) {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(x, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

fn apply(mut doc: Value, edits: &[JsonEdit]) -> Value {
    for e in edits {
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let (JsonEdit::Replace(i, _) | JsonEdit::Remove(i) | JsonEdit::AddKey(i, ..)) = e;
        let pointer = all[i.index(all.len())].clone();
        match e {
            JsonEdit::Replace(_, v) => {
                if let Some(node) = doc.pointer_mut(&pointer) {
                    *node = v.clone();
                }
            }
            JsonEdit::Remove(_) => {
                let Some((parent, last)) = pointer.rsplit_once('/') else {
                    continue;
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(o)) => {
                        o.remove(&last);
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            if i < a.len() {
                                a.remove(i);
                            }
                        }
                    }
                    _ => {}
                }
            }
            JsonEdit::AddKey(_, k, v) => {
                if let Some(Value::Object(o)) = doc.pointer_mut(&pointer) {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
    }
    doc
}

/// Well-formed JSON with random values in random places: wrong types, negative or huge ids,
/// unknown model or normaliser types, missing keys, unknown keys, deep nesting.
#[test]
fn tokenizer_json_mutated_documents() {
    isolated("tokenizer_json_mutated_documents", LIMIT, || {
        let dir = config_dir();
        let seeds = json_seeds();
        let strategy = (
            0..seeds.len(),
            prop::collection::vec(json_edit(), 1..4),
            text(),
        );
        check(8, 384, strategy, |(s, e, t)| {
            let doc = apply(seeds[s].clone(), &e);
            let bytes = doc.to_string().into_bytes();
            prop_assume!(bytes.len() < 64 << 10);
            exercise_json(dir.path(), &bytes, &t)
        });
        report("tokenizer_json_mutated_documents");
    });
}

/// The seeds themselves load and encode (so the mutations start from valid files).
#[test]
fn tokenizer_json_seeds_load() {
    let dir = config_dir();
    for seed in json_seeds() {
        std::fs::write(dir.path().join("tokenizer.json"), seed.to_string()).unwrap();
        let tok = Tokenizer::Fast(Box::new(FastTokenizer::from_dir(dir.path()).unwrap()));
        let enc = tok
            .encode("Hello world", None, &EncodeOptions::default())
            .unwrap();
        assert!(enc.input_ids.len() >= 3, "{:?}", enc.input_ids);
    }
}
