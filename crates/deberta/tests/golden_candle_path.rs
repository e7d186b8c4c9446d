//! The golden model cases again on the candle path: on CPU f32 the fused path (`src/cpu`) runs
//! by default, while the candle path serves other devices and dtypes, trains, and stays the
//! readable oracle, so both are held to transformers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[test]
fn every_golden_model_case_on_the_candle_path() {
    common::every_golden_model_case(common::on_path(deberta::PathChoice::Candle));
}
