//! Arbitrary text through the slow (pure-Rust sentencepiece) and fast DeBERTa-v3 tokenizers,
//! with truncation windows and padding. Run: `cargo +nightly fuzz run encode_text`.
#![no_main]

use std::sync::OnceLock;

use deberta_tokenizer::{
    EncodeOptions, Impl, Padding, PaddingStrategy, Side, Tokenizer, Truncation, TruncationStrategy,
};
use libfuzzer_sys::fuzz_target;

fn tokenizers() -> &'static Option<(Tokenizer, Tokenizer)> {
    static TOKS: OnceLock<Option<(Tokenizer, Tokenizer)>> = OnceLock::new();
    TOKS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/deberta-v3");
        let slow = Tokenizer::from_dir_with(dir, Impl::Slow).ok()?;
        let fast = Tokenizer::from_dir_with(dir, Impl::Fast).ok()?;
        Some((slow, fast))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((slow, fast)) = tokenizers() else { return };
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i));
    let opts = EncodeOptions {
        add_special_tokens: true,
        truncation: Some(Truncation {
            max_length: 9,
            strategy: TruncationStrategy::LongestFirst,
            stride: 1,
            side: Side::Right,
        }),
        padding: Padding { strategy: PaddingStrategy::Longest, side: Side::Left, pad_to_multiple_of: Some(4) },
    };
    for tok in [slow, fast] {
        if let Ok(enc) = tok.encode(a, Some(b), &opts) {
            let _ = tok.decode(&enc.input_ids, true);
        }
        let _ = tok.encode(text, None, &EncodeOptions::default());
    }
});
