//! The bf16 linear layers ([`super::bf16`]) on `vdpbf16ps` (AVX512-BF16), where the CPU has
//! it: the weight rounded to bf16 once and packed as pairs of inputs, each call's input rounded
//! into pairs, and [`avx512::bf16_tile`] multiplying 12-row x 32-column tiles, products summed
//! in f32.
//!
//! The instruction adds the odd input's product before the even one's and flushes subnormals,
//! so the results differ from the AVX2 path's (one product at a time, in input order) by the
//! order of the f32 sums: about 1e-7 relative, well inside what `tests/bf16.rs` holds both
//! to.
//!
//! Weight layout: panels of 32 output columns; within a panel, for each input pair `k, k+1`,
//! 32 `(w[n, k], w[n, k+1])` bf16 pairs (the even `k` in the low half): one 512-bit load per
//! 16 columns. Half the memory of the f32 weight.

use rayon::prelude::*;

use super::avx512::{self, Tile, COLS as PANEL, MAX_ROWS as TILE_ROWS};
use super::bf16::to_bf16;
use super::rows::Epilogue;
use super::{check_io, check_weight, for_each_tile, Avx512, SharedMut};
use crate::{Error, Result};

/// Tiles of rows per parallel task (96 rows: 576 KiB of bf16 inputs at `in_dim` 3072, in L2).
const CHUNK_TILES: usize = 8;
/// Panels per parallel task.
const CHUNK_PANELS: usize = 4;
/// Rows per parallel task when rounding inputs.
const ROUND_ROWS_PER_TASK: usize = 16;

/// Whether the bf16 format uses this layout: where the CPU has AVX512-BF16, unless
/// `DEBERTA_CPU_AVX512=0`; and on the portable kernel with `DEBERTA_CPU_AVX512=portable`.
pub fn chosen() -> bool {
    match super::avx512_switch() {
        Avx512::Off => false,
        Avx512::Portable => true,
        Avx512::Auto => available(),
    }
}

/// The kernel [`Bf16DotLinear::new`] picks, for reports.
pub fn kernel() -> &'static str {
    if available() && super::avx512_switch() != Avx512::Portable {
        "avx512-bf16 vdpbf16ps"
    } else {
        "portable bf16 (pairs)"
    }
}

/// Whether this CPU runs [`avx512::bf16_tile`].
fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// An `nn.Linear` weight `[out, in]` rounded to bf16 and packed in input pairs.
pub struct Bf16DotLinear {
    in_dim: usize,
    out_dim: usize,
    /// Input pairs (`ceil(in / 2)`).
    pairs: usize,
    /// `[panels][pairs][32]` bf16 pairs.
    packed: Vec<u32>,
    /// Whether the tiles run on `vdpbf16ps` (else on its portable twin, which only the tests
    /// choose).
    avx512: bool,
}

impl Bf16DotLinear {
    /// Rounds and packs `w [out_dim, in_dim]` (row-major), for `vdpbf16ps` where the CPU has
    /// AVX512-BF16 and `DEBERTA_CPU_AVX512` is not `portable`, else for its portable twin.
    pub fn new(w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        let kernel = available() && super::avx512_switch() != Avx512::Portable;
        Self::build(w, out_dim, in_dim, kernel)
    }

    /// The same on the kernel's portable twin (same results, any CPU, slow).
    #[cfg(test)]
    fn portable(w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        Self::build(w, out_dim, in_dim, false)
    }

    fn build(w: &[f32], out_dim: usize, in_dim: usize, avx512: bool) -> Result<Self> {
        check_weight("bf16 dot-product linear", w, out_dim, in_dim)?;
        let pairs = in_dim.div_ceil(2);
        let mut packed = vec![0u32; out_dim.div_ceil(PANEL) * pairs * PANEL];
        packed
            .par_chunks_mut(pairs * PANEL)
            .enumerate()
            .for_each(|(panel, dst)| {
                for c in 0..PANEL.min(out_dim - panel * PANEL) {
                    let row = &w[(panel * PANEL + c) * in_dim..][..in_dim];
                    for (p, pair) in row.chunks(2).enumerate() {
                        dst[p * PANEL + c] = bf16_pair(pair);
                    }
                }
            });
        Ok(Self {
            in_dim,
            out_dim,
            pairs,
            packed,
            avx512,
        })
    }

    /// `out[rows, out_dim] = round(x)[rows, in_dim] · wᵀ`, then the `epilogue` (bias,
    /// activation), if any, applied to each tile as it is stored. The input is rounded into
    /// `pairs` (resized; the caller keeps it for the duration of a forward pass).
    pub fn forward(
        &self,
        x: &[f32],
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
        pairs: &mut Vec<u32>,
    ) -> Result<()> {
        let what = "bf16 dot-product linear";
        let rows = check_io(what, x, out, self.in_dim, self.out_dim)?;
        if epilogue.is_some_and(|e| !e.fits(self.out_dim)) {
            return Err(Error::Input(format!(
                "{what}: the bias or activation does not fit {} output columns",
                self.out_dim
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        round_pairs(x, self.in_dim, self.pairs, pairs);
        let dst = SharedMut(out.as_mut_ptr());
        let panels = self.out_dim.div_ceil(PANEL);
        let grid = (rows, TILE_ROWS, CHUNK_TILES);
        for_each_tile(grid, (panels, CHUNK_PANELS), |r0, tile_rows, panel| {
            let tile = Tile {
                a: pairs[r0 * self.pairs..].as_ptr(),
                lda: self.pairs,
                rows: tile_rows,
                b: self.packed[panel * self.pairs * PANEL..].as_ptr(),
                groups: self.pairs,
            };
            let mut acc = [[0f32; PANEL]; TILE_ROWS];
            // SAFETY: `pairs` holds the tile's rows of `self.pairs` groups, `packed` the
            // panel's `self.pairs x 32`; `avx512` was checked against the CPU at packing.
            unsafe { self.tile(&tile, &mut acc) };
            let col0 = panel * PANEL;
            let cols = (self.out_dim - col0).min(PANEL);
            for (r, acc_row) in acc.iter().enumerate().take(tile_rows) {
                // SAFETY: `for_each_tile` hands each (rows, panel) tile to one call only, and
                // row `r0 + r` x columns `col0..col0 + cols` lie inside `out`.
                let seg = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.get().add((r0 + r) * self.out_dim + col0),
                        cols,
                    )
                };
                seg.copy_from_slice(&acc_row[..cols]);
                if let Some(epilogue) = epilogue {
                    epilogue.apply(seg, col0);
                }
            }
        });
        Ok(())
    }

    /// # Safety
    /// As for [`avx512::bf16_tile`] (its CPU features only when `self.avx512`).
    unsafe fn tile(&self, tile: &Tile, acc: &mut [[f32; PANEL]; TILE_ROWS]) {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            return avx512::bf16_tile(tile, acc);
        }
        avx512::bf16_tile_portable(tile, acc);
    }
}

/// Up to two values rounded to bf16 as one pair (the first in the low half; a missing second
/// is 0).
#[inline(always)]
fn bf16_pair(pair: &[f32]) -> u32 {
    let lo = u32::from(to_bf16(pair[0]));
    let hi = pair.get(1).map_or(0, |&v| u32::from(to_bf16(v)));
    lo | hi << 16
}

/// `x [rows, in_dim]` rounded to bf16 pairs, `pairs` per row, into `buf`, in parallel.
fn round_pairs(x: &[f32], in_dim: usize, pairs: usize, buf: &mut Vec<u32>) {
    let rows = x.len() / in_dim;
    buf.resize(rows * pairs, 0);
    buf.par_chunks_mut(pairs * ROUND_ROWS_PER_TASK)
        .zip(x.par_chunks(in_dim * ROUND_ROWS_PER_TASK))
        .for_each(|(dst, src)| round_pair_rows(dst, src, in_dim, pairs));
}

super::simd_fn! {
/// Rows of `in_dim` values into rows of `pairs` bf16 pairs.
fn round_pair_rows(dst: &mut [u32], src: &[f32], in_dim: usize, pairs: usize) {
    for (d, s) in dst.chunks_exact_mut(pairs).zip(src.chunks_exact(in_dim)) {
        for (dv, sv) in d.iter_mut().zip(s.chunks(2)) {
            *dv = bf16_pair(sv);
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::bf16::round;
    use crate::cpu::pseudo_random;
    use crate::Activation;

    /// `round(x) · round(w)ᵀ` in f64.
    fn reference(x: &[f32], w: &[f32], in_dim: usize) -> Vec<f64> {
        let rows = x.len() / in_dim;
        let out_dim = w.len() / in_dim;
        let mut out = vec![0f64; rows * out_dim];
        for r in 0..rows {
            for n in 0..out_dim {
                out[r * out_dim + n] = (0..in_dim)
                    .map(|k| {
                        f64::from(round(x[r * in_dim + k])) * f64::from(round(w[n * in_dim + k]))
                    })
                    .sum();
            }
        }
        out
    }

    /// Partial tiles and panels, odd input widths, several tasks each way; on the portable
    /// kernel, and on `vdpbf16ps` where the CPU has it (the two bit for bit).
    #[test]
    fn matches_the_rounded_product_and_the_kernel_its_twin() {
        let shapes = [
            (13usize, 37usize, 21usize),
            (1, 5, 3),
            (25, 64, 48),
            (200, 71, 300),
        ];
        for &(rows, in_dim, out_dim) in &shapes {
            let x = pseudo_random(rows * in_dim, 7);
            let w = pseudo_random(out_dim * in_dim, 8);
            let bias = pseudo_random(out_dim, 9);
            let gelu = Epilogue::BiasAct {
                bias: &bias,
                act: Activation::Gelu,
            };
            let want = reference(&x, &w, in_dim);
            let portable = Bf16DotLinear::portable(&w, out_dim, in_dim).unwrap();
            let mut got = vec![f32::NAN; rows * out_dim];
            let mut pairs = Vec::new();
            portable.forward(&x, &mut got, None, &mut pairs).unwrap();
            let max = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (f64::from(*g) - w).abs())
                .fold(0f64, f64::max);
            println!("{rows}x{in_dim}x{out_dim}: max |bf16 dot - f64| {max:.2e}");
            assert!(max < 1e-5, "{max}");

            let mut fused = vec![f32::NAN; rows * out_dim];
            portable
                .forward(&x, &mut fused, Some(&gelu), &mut pairs)
                .unwrap();
            for row in got.chunks_exact_mut(out_dim) {
                gelu.apply(row, 0);
            }
            assert_eq!(fused, got);

            if available() {
                let fast = Bf16DotLinear::new(&w, out_dim, in_dim).unwrap();
                let mut kernel = vec![f32::NAN; rows * out_dim];
                fast.forward(&x, &mut kernel, Some(&gelu), &mut pairs)
                    .unwrap();
                let same = kernel
                    .iter()
                    .zip(&fused)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "vdpbf16ps differs from its twin at {rows}x{in_dim}x{out_dim}"
                );
            }
        }
        if !available() {
            println!("no AVX512-BF16 here: checked the portable kernel only");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(Bf16DotLinear::portable(&[0.0; 6], 4, 2).is_err());
        let q = Bf16DotLinear::portable(&[0.0; 6], 3, 2).unwrap();
        let mut pairs = Vec::new();
        assert!(q
            .forward(&[0.0; 4], &mut [0.0; 5], None, &mut pairs)
            .is_err());
        let short_bias = Epilogue::BiasAct {
            bias: &[0.0; 2],
            act: Activation::Relu,
        };
        assert!(q
            .forward(&[0.0; 4], &mut [0.0; 6], Some(&short_bias), &mut pairs)
            .is_err());
    }
}
