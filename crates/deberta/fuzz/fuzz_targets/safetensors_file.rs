//! Arbitrary bytes as `model.safetensors`: opening and loading every listed tensor must return
//! a named error or tensors, never panic. Run: `cargo +nightly fuzz run safetensors_file`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("deberta-fuzz-{}.safetensors", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let opened = deberta::Checkpoint::from_files(
        std::slice::from_ref(&path),
        deberta::WeightFormat::Safetensors,
    );
    if let Ok(ck) = opened {
        let names: Vec<(String, Vec<usize>)> = ck
            .names()
            .map(|n| (n.to_string(), ck.shape(n).map(<[usize]>::to_vec).unwrap_or_default()))
            .collect();
        for (name, shape) in names {
            let _ = ck.load(&name, &shape, &candle_core::Device::Cpu);
        }
    }
    let _ = std::fs::remove_file(&path);
});
