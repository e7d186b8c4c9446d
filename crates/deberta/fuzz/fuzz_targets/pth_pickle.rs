//! Arbitrary bytes as the pickle (`data.pkl`) of a well-formed `pytorch_model.bin` with one
//! 4 KiB storage, so the fuzzer spends its time in the pickle machine rather than the zip
//! parser. Run: `cargo +nightly fuzz run pth_pickle` in this directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let storage = [0x3fu8; 4096];
    let Ok(bytes) = deberta::export::pytorch::zip_stored(&[
        ("archive/data.pkl", data),
        ("archive/data/0", &storage),
    ]) else {
        return;
    };
    if let Ok(file) = deberta::pth::PthFile::from_bytes(bytes) {
        let names: Vec<String> = file.tensors().map(|(n, _)| n.to_string()).collect();
        for name in names {
            let _ = file.read_f32(&name);
        }
    }
});
