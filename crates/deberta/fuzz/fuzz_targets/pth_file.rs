//! Arbitrary bytes as `pytorch_model.bin`: opening must return a named error or an archive whose
//! every tensor reads (or fails with a named error) without panicking, within the reader's
//! limits. Run: `cargo +nightly fuzz run pth_file` in this directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = deberta::pth::PthFile::from_bytes(data.to_vec()) {
        let names: Vec<String> = file.tensors().map(|(n, _)| n.to_string()).collect();
        for name in names {
            let _ = file.read_f32(&name);
        }
    }
});
