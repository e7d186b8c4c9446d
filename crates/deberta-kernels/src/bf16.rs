//! bf16 for the linear layers (`--dtype bf16`): weights rounded to bf16 once, inputs rounded
//! to bf16 at each call, products summed in f32; the bias, activation and everything outside
//! the linear layers stay f32.
//!
//! A bf16 dot-product instruction (`vdpbf16ps`) computes nearly this: bf16 x bf16 products,
//! exact in f32, accumulated in f32 (it adds them in pairs and flushes subnormals, so a kernel
//! on it would differ in the order of the sums and on subnormals). Rounding is to nearest, ties
//! to even, as PyTorch's scalar `round_to_nearest_even`.
//!
//! On AVX2 the weights stay bf16 in memory (half the f32 packing) and each panel slice is
//! widened to f32 in L1 as the GEMM reaches it ([`crate::sgemm`]); elsewhere the rounded
//! weights are kept as f32 for the `gemm` crate. Inputs are rounded into a buffer the layer
//! loop owns ([`round_rows`]), so nothing outlives a forward pass.

use rayon::prelude::*;

/// Rows per parallel task when rounding inputs.
const ROWS_PER_TASK: usize = 16;

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

/// `x [rows, width]` with every value rounded to bf16, written to `buf` (resized to fit; the
/// caller keeps it for the duration of a forward pass), in parallel.
pub fn round_rows<'a>(x: &[f32], width: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
    buf.resize(x.len(), 0.0);
    let block = (width * ROWS_PER_TASK).max(1);
    buf.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .for_each(|(dst, src)| round_into(dst, src));
    buf
}

crate::simd_fn! {
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
        let x = crate::test_util::pseudo_random(37 * 5, 9);
        let want: Vec<f32> = x.iter().map(|&v| round(v)).collect();
        let mut buf = vec![f32::NAN; 3];
        assert_eq!(round_rows(&x, 5, &mut buf), &want[..]);
    }
}
