//! Arbitrary text as `config.json`: parsing and validation must return a named error or a
//! config within the plausibility limits, never panic. Run: `cargo +nightly fuzz run
//! config_json` in this directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = deberta::DebertaV2Config::from_json_str(text);
    }
});
