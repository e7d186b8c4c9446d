//! Arbitrary bytes as `spm.model`: parsing must return an error or a model that encodes and
//! decodes without panicking. Run: `cargo +nightly fuzz run spm_model` in this directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spm) = deberta_tokenizer::SentencePiece::from_bytes(data.to_vec()) {
        let pieces = spm.encode("Hello wörld 𩸽  [MASK] 你好");
        let strings: Vec<String> = pieces.into_iter().map(|p| p.piece.into_owned()).collect();
        let _ = spm.decode_pieces(&strings);
    }
});
