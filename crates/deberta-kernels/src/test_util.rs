//! Deterministic data and comparisons for the kernels' tests (and the `deberta` crate's tests
//! of its calls into them). Not part of the API.

use crate::MatRef;

/// `v` read as a matrix with row stride `rs` and column stride `cs`.
pub fn strided(v: &[f32], rs: usize, cs: usize) -> MatRef {
    MatRef {
        ptr: v.as_ptr(),
        rs: rs as isize,
        cs: cs as isize,
    }
}

/// Deterministic values in [-0.5, 0.5).
pub fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// The largest `|a - b|` over two slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}
