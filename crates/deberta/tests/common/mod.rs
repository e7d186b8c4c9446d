//! Helpers shared by the golden tests.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::Tensor;

/// The committed fixtures at the repository root.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Asserts `|got - expected| <= atol + rtol * |expected|` everywhere, prints and returns the max
/// absolute difference.
pub fn assert_close(label: &str, got: &Tensor, expected: &Tensor, atol: f32, rtol: f32) -> f32 {
    assert_eq!(got.dims(), expected.dims(), "{label}: shape");
    let g = got
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let e = expected
        .flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut max_diff = 0f32;
    let mut worst = None;
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        let d = (a - b).abs();
        assert!(!d.is_nan(), "{label}: NaN at {i} (got {a}, expected {b})");
        if d > max_diff {
            max_diff = d;
        }
        if d > atol + rtol * b.abs() && worst.is_none() {
            worst = Some((i, *a, *b));
        }
    }
    println!("{label}: max |diff| = {max_diff:.3e}");
    if let Some((i, a, b)) = worst {
        panic!("{label}: element {i} got {a}, expected {b} (max |diff| {max_diff:.3e}, atol {atol}, rtol {rtol})");
    }
    max_diff
}
