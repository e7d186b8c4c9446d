//! The golden model cases again on the candle path (`DEBERTA_CPU_FAST=0`): on CPU f32 the
//! fused fast path (`src/cpu`) runs by default, while the candle path serves other devices and
//! dtypes and stays the readable oracle, so both are held to transformers.
//!
//! One test in its own binary, so setting the variable before any forward pass is race-free.

mod common;

#[test]
fn every_golden_model_case_on_the_candle_path() {
    std::env::set_var("DEBERTA_CPU_FAST", "0");
    common::every_golden_model_case();
}
