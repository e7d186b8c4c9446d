//! Draws `curves.png` and `curves.svg` for finished runs:
//! `cargo run -p deberta-train --example curves -- DIR...` (each DIR holds a run's `log.jsonl`
//! and `metrics.jsonl`, e.g. `models/deberta-v3-tiny-en`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    for dir in std::env::args().skip(1) {
        deberta_train::plot::curves::write_curves(std::path::Path::new(&dir)).unwrap();
        println!("{dir}/curves.png {dir}/curves.svg");
    }
}
