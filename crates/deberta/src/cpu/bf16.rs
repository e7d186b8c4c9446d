//! bf16 for the linear layers (`--dtype bf16`): weights rounded to bf16 once, inputs rounded
//! to bf16 at each call, products summed in f32; the bias, activation and everything outside
//! the linear layers stay f32.
//!
//! This is what a bf16 dot-product instruction computes (`vdpbf16ps`: bf16 x bf16 products,
//! exact in f32, accumulated in f32), so every CPU gets the same numbers up to the order of
//! the sums. Rounding is to nearest, ties to even, as `torch.Tensor.to(torch.bfloat16)`.
//!
//! On AVX2 the weights stay bf16 in memory (half the f32 packing) and each panel slice is
//! widened to f32 in L1 as the GEMM reaches it ([`super::sgemm`]); elsewhere the rounded
//! weights are kept as f32 for the `gemm` crate.

use std::cell::RefCell;

use rayon::prelude::*;

/// Rows per parallel task when rounding inputs.
const ROWS_PER_TASK: usize = 16;

thread_local! {
    /// The calling thread's rounded copy of the current input, kept across calls (the
    /// largest is the output layer's `[tokens, intermediate]`).
    static ROUNDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `x` rounded to the nearest bf16 (ties to even), as its upper 16 bits. NaN becomes the quiet
/// NaN `0x7fc0` and finite values past bf16's range round to infinity, as in PyTorch.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return 0x7fc0;
    }
    let bias = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(bias) >> 16) as u16
}

/// The f32 with the bf16 `h` as its upper half (exact).
#[inline(always)]
pub fn widen(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `x` rounded to bf16 and widened back to f32.
#[inline(always)]
pub fn round(x: f32) -> f32 {
    widen(to_bf16(x))
}

/// Runs `f` on `x [rows, width]` with every value rounded to bf16 (a thread-local copy, filled
/// in parallel).
pub fn with_rounded<R>(x: &[f32], width: usize, f: impl FnOnce(&[f32]) -> R) -> R {
    let fill = |buf: &mut Vec<f32>| {
        buf.resize(x.len(), 0.0);
        let block = (width * ROWS_PER_TASK).max(1);
        buf.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(dst, src)| round_into(dst, src));
    };
    ROUNDED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            fill(&mut buf);
            f(&buf)
        }
        Err(_) => {
            let mut buf = Vec::new();
            fill(&mut buf);
            f(&buf)
        }
    })
}

super::simd_fn! {
/// `dst[i] = round(src[i])`.
fn round_into(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = round(s);
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even_like_torch() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to the even one.
        assert_eq!(to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        // Just above the halfway point rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert_eq!(to_bf16(0.0), 0);
        assert_eq!(to_bf16(-0.0), 0x8000);
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(to_bf16(f32::MAX), 0x7f80);
        assert!(widen(to_bf16(f32::NAN)).is_nan());
        assert_eq!(to_bf16(f32::from_bits(1)), 0); // the smallest subnormal rounds to +0
        for x in [0.1f32, -3.7, 1e-30, 65504.0, 3.0e38] {
            let r = round(x);
            assert!((r - x).abs() <= x.abs() * 2f32.powi(-9), "{x} -> {r}");
        }
    }

    #[test]
    fn rounded_copy_matches_the_scalar_rounding() {
        let x = crate::cpu::pseudo_random(37 * 5, 9);
        let want: Vec<f32> = x.iter().map(|&v| round(v)).collect();
        with_rounded(&x, 5, |r| assert_eq!(r, &want[..]));
    }
}
