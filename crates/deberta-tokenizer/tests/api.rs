//! API behaviour: auto selection, special-token helpers, save_vocabulary, and clear errors
//! (never panics) on corrupt files and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use deberta_tokenizer::{
    EncodeOptions, Error, Impl, SentencePiece, SlowTokenizer, Tokenizer, TruncationStrategy,
};

fn v3() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deberta-v3")
}

fn small() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/unigram-nobyte")
}

#[test]
fn auto_picks_fast_when_tokenizer_json_exists() {
    assert_eq!(Tokenizer::from_dir(v3()).unwrap().kind(), Impl::Fast);
    assert_eq!(Tokenizer::from_dir(small()).unwrap().kind(), Impl::Slow);
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Tokenizer::from_dir(dir.path()),
        Err(Error::NoTokenizerFiles(_))
    ));
}

#[test]
fn known_v3_ids_and_offsets() {
    // Golden ids from REFERENCE.md §2.13 (spm byte fallback for 𩸽 in the slow tokenizer).
    let slow = Tokenizer::from_dir_with(v3(), Impl::Slow).unwrap();
    let enc = slow
        .encode(
            "This is a sample sentence to be tokénized",
            None,
            &EncodeOptions::default(),
        )
        .unwrap();
    assert_eq!(
        enc.input_ids,
        [1, 329, 269, 266, 2783, 4378, 264, 282, 264, 1165, 28081, 4666, 2]
    );
    assert_eq!(
        slow.encode("…", None, &EncodeOptions::default())
            .unwrap()
            .input_ids,
        [1, 323, 260, 260, 2]
    );
    let e = slow
        .encode("Hello 𩸽 x", None, &EncodeOptions::default())
        .unwrap();
    assert_eq!(&e.input_ids[2..7], &[507, 244, 173, 188, 193]);
    // Byte pieces: all but the last have an empty span at the character start.
    assert_eq!(&e.offsets[3..7], &[(6, 6), (6, 6), (6, 6), (6, 7)]);
    assert_eq!(e.offsets[1], (0, 5));
}

#[test]
fn special_token_helpers() {
    let Tokenizer::Slow(slow) = Tokenizer::from_dir_with(v3(), Impl::Slow).unwrap() else {
        panic!("expected slow");
    };
    assert_eq!(
        slow.build_inputs_with_special_tokens(&[10, 11], Some(&[12])),
        [1, 10, 11, 2, 12, 2]
    );
    assert_eq!(
        slow.get_special_tokens_mask(&[10, 11], Some(&[12]), false)
            .unwrap(),
        [1, 0, 0, 1, 0, 1]
    );
    assert_eq!(
        slow.get_special_tokens_mask(&[1, 10, 128000, 3, 2], None, true)
            .unwrap(),
        [1, 0, 1, 1, 1]
    );
    assert_eq!(
        slow.create_token_type_ids_from_sequences(&[10, 11], Some(&[12])),
        [0, 0, 0, 0, 1, 1]
    );
    assert_eq!(slow.vocab_size(), 128000);
    assert_eq!(slow.len_with_added(), 128001);
    assert_eq!(
        slow.convert_tokens_to_string(&["[CLS]", "▁Hello", "▁world", "[SEP]"]),
        "[CLS] Hello world[SEP]"
    );
}

#[test]
fn save_vocabulary_writes_identical_model() {
    let slow = SlowTokenizer::from_dir(small()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = slow.save_vocabulary(dir.path(), Some("x")).unwrap();
    assert!(path.ends_with("x-spm.model"));
    let original = std::fs::read(small().join("spm.model")).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), original);
}

#[test]
fn corrupt_files_give_errors_not_panics() {
    let good = std::fs::read(v3().join("spm.model")).unwrap();
    for cut in [0, 1, 7, 100, 5000, good.len() / 2, good.len() - 1] {
        assert!(
            SentencePiece::from_bytes(good[..cut].to_vec()).is_err(),
            "cut at {cut}"
        );
    }
    let mut flipped = good.clone();
    for i in (0..flipped.len()).step_by(997) {
        flipped[i] ^= 0x5a;
    }
    if let Ok(spm) = SentencePiece::from_bytes(flipped) {
        let _ = spm.encode("still no panic ✓");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer.json"),
        "{\"version\": \"1.0\", \"model\": 3",
    )
    .unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    assert!(Tokenizer::from_dir(dir.path()).is_err());
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("spm.model"), b"\x0a\x05hello").unwrap();
    assert!(Tokenizer::from_dir(dir.path()).is_err());
    std::fs::copy(small().join("spm.model"), dir.path().join("spm.model")).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        "{\"do_lower_case\": 3}",
    )
    .unwrap();
    let err = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("do_lower_case"), "{err}");
}

#[test]
fn bad_options_are_errors() {
    let tok = Tokenizer::from_dir_with(v3(), Impl::Fast).unwrap();
    let opts = |max_length, stride| EncodeOptions {
        truncation: Some(deberta_tokenizer::Truncation {
            max_length,
            stride,
            strategy: TruncationStrategy::LongestFirst,
            side: deberta_tokenizer::Side::Right,
        }),
        ..EncodeOptions::default()
    };
    assert!(tok.encode("a b c d e f g", None, &opts(1, 0)).is_err());
    assert!(tok.encode("a b c d e f g", None, &opts(5, 3)).is_err());
    assert!(tok.encode("a b c d e f g", None, &opts(5, 2)).is_ok());
}
