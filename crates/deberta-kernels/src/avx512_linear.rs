//! The f32 and bf16 linear layers on AVX-512, where the CPU has it: the weight packed once in
//! panels of 32 output columns, and [`avx512::f32_tile`] (`vfmadd231ps`, AVX512F) or
//! [`avx512::bf16_tile`] (`vdpbf16ps`, AVX512-BF16) multiplying 12-row x 32-column tiles over
//! the whole input width, each tile stored with the layer's bias and activation.
//!
//! - f32: `[panels][in][32]` f32; the input is read in place. Products are added one input at
//!   a time, in order, as fused multiply-adds: the same arithmetic as the AVX2 kernel's within
//!   one of its `k` blocks (which then adds the blocks' sums).
//! - bf16 ([`super::bf16`]): `[panels][in / 2][32]` pairs of bf16 (the even input in the low
//!   half), half the f32 weight's memory; each call's input is rounded into pairs. The
//!   instruction adds the odd input's product before the even one's and flushes subnormals, so
//!   results differ from the AVX2 path's by the order of the f32 sums (about 1e-7 relative, well
//!   inside what `tests/bf16.rs` holds both to).

use rayon::prelude::*;

use crate::avx512::{self, Tile, COLS as PANEL, MAX_ROWS as TILE_ROWS};
use crate::bf16::to_bf16;
use crate::rows::Epilogue;
use crate::{
    check_epilogue, check_io, check_weight, for_each_tile, simd_fn, CpuFeatures, Error, KernelPlan,
    Result, SharedMut,
};

/// Tiles of rows per parallel task (96 rows: 576 KiB of bf16 inputs at `in_dim` 3072).
const CHUNK_TILES: usize = 8;
/// Panels per parallel task.
const CHUNK_PANELS: usize = 4;
/// Rows per parallel task when rounding inputs.
const ROUND_ROWS_PER_TASK: usize = 16;

/// The number format of an [`Avx512Linear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    F32,
    Bf16,
}

/// An `nn.Linear` weight `[out, in]` packed for the AVX-512 tiles.
pub struct Avx512Linear {
    kind: Kind,
    in_dim: usize,
    out_dim: usize,
    /// 32-bit groups per input row: `in` (f32) or `ceil(in / 2)` (bf16 pairs).
    groups: usize,
    /// `[panels][groups][32]`.
    packed: Vec<u32>,
    /// Whether the tiles run on the instructions (else on their portable twins).
    hardware: bool,
}

impl Avx512Linear {
    /// Packs `w [out_dim, in_dim]` (row-major) as `kind`, for the instructions where the
    /// plan runs them, else for their portable twins.
    pub fn new(
        plan: &KernelPlan,
        w: &[f32],
        out_dim: usize,
        in_dim: usize,
        kind: Kind,
    ) -> Result<Self> {
        Self::build(w, (out_dim, in_dim), kind, plan.avx512_hardware(kind))
    }

    /// Packs for the instructions (`hw`; an error where this CPU lacks them) or for their
    /// portable twins.
    fn build(w: &[f32], (out_dim, in_dim): (usize, usize), kind: Kind, hw: bool) -> Result<Self> {
        check_weight(kind.what(), w, out_dim, in_dim)?;
        if hw && !kind.runs_here() {
            return Err(Error::Unsupported {
                kernel: kind.what(),
                needs: kind.needs(),
            });
        }
        let group_size = match kind {
            Kind::F32 => 1,
            Kind::Bf16 => 2,
        };
        let groups = in_dim.div_ceil(group_size);
        let mut packed = vec![0u32; out_dim.div_ceil(PANEL) * groups * PANEL];
        packed
            .par_chunks_mut(groups * PANEL)
            .enumerate()
            .for_each(|(panel, dst)| {
                for c in 0..PANEL.min(out_dim - panel * PANEL) {
                    let row = &w[(panel * PANEL + c) * in_dim..][..in_dim];
                    for (g, values) in row.chunks(group_size).enumerate() {
                        dst[g * PANEL + c] = kind.group(values);
                    }
                }
            });
        Ok(Self {
            kind,
            in_dim,
            out_dim,
            groups,
            packed,
            hardware: hw,
        })
    }

    /// `out[rows, out_dim] = x[rows, in_dim] · wᵀ` (bf16: `x` rounded), then the `epilogue`
    /// (bias, activation), if any, applied to each tile as it is stored. bf16 rounds the input
    /// into `pairs` (resized; the caller keeps it for the duration of a forward pass).
    pub fn forward(
        &self,
        x: &[f32],
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
        pairs: &mut Vec<u32>,
    ) -> Result<()> {
        let what = self.kind.what();
        let rows = check_io(what, x, out, self.in_dim, self.out_dim)?;
        check_epilogue(what, epilogue, self.out_dim)?;
        if rows == 0 {
            return Ok(());
        }
        // The input as rows of `groups` 32-bit groups.
        let a: &[u32] = match self.kind {
            // SAFETY: the same memory read as u32 bit patterns (same size and alignment).
            Kind::F32 => unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) },
            Kind::Bf16 => {
                round_pairs(x, self.in_dim, self.groups, pairs);
                pairs
            }
        };
        let dst = SharedMut(out.as_mut_ptr());
        let panels = self.out_dim.div_ceil(PANEL);
        let grid = (rows, TILE_ROWS, CHUNK_TILES);
        for_each_tile(grid, (panels, CHUNK_PANELS), |r0, tile_rows, panel| {
            let tile = Tile {
                a: a[r0 * self.groups..].as_ptr(),
                lda: self.groups,
                rows: tile_rows,
                b: self.packed[panel * self.groups * PANEL..].as_ptr(),
                groups: self.groups,
            };
            let mut acc = [[0f32; PANEL]; TILE_ROWS];
            // SAFETY: the input holds `rows` rows of `groups` groups and `packed` the panel's
            // `groups x 32`; `hardware` was checked against the CPU at packing.
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

    /// One tile on the instructions or their portable twins.
    ///
    /// # Safety
    /// As for [`avx512::f32_tile`] / [`avx512::bf16_tile`] (their CPU features only when
    /// `self.hardware`).
    unsafe fn tile(&self, tile: &Tile, acc: &mut [[f32; PANEL]; TILE_ROWS]) {
        #[cfg(target_arch = "x86_64")]
        if self.hardware {
            // SAFETY: `hardware` was checked against the CPU when the weights were packed;
            // the rest is the caller's contract.
            return unsafe {
                match self.kind {
                    Kind::F32 => avx512::f32_tile(tile, acc),
                    Kind::Bf16 => avx512::bf16_tile(tile, acc),
                }
            };
        }
        // SAFETY: the caller's contract (the twins need no CPU feature).
        unsafe {
            match self.kind {
                Kind::F32 => avx512::f32_tile_portable(tile, acc),
                Kind::Bf16 => avx512::bf16_tile_portable(tile, acc),
            }
        }
    }
}

impl Kind {
    /// The kernel's name for reports, on the instructions (`hardware`) or their twins.
    pub fn kernel_name(self, hardware: bool) -> &'static str {
        match (self, hardware) {
            (Kind::F32, true) => "avx512f packed f32",
            (Kind::F32, false) => "portable f32 (avx512 layout)",
            (Kind::Bf16, true) => "avx512-bf16 vdpbf16ps",
            (Kind::Bf16, false) => "portable bf16 (pairs)",
        }
    }

    /// Whether this CPU runs the `kind` kernel's instructions.
    fn runs_here(self) -> bool {
        let cpu = CpuFeatures::detect();
        cpu.avx512f && (self == Kind::F32 || cpu.avx512bf16)
    }

    /// The CPU features the instructions need.
    fn needs(self) -> &'static str {
        match self {
            Kind::F32 => "AVX512F",
            Kind::Bf16 => "AVX512F and AVX512-BF16",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::F32 => "avx512 f32 linear",
            Kind::Bf16 => "avx512 bf16 linear",
        }
    }

    /// One weight group: an f32's bits, or up to two values rounded to a bf16 pair.
    fn group(self, values: &[f32]) -> u32 {
        match self {
            Kind::F32 => values.first().map_or(0, |v| v.to_bits()),
            Kind::Bf16 => bf16_pair(values),
        }
    }
}

/// Up to two values rounded to bf16 as one pair (the first in the low half; a missing second
/// is 0).
#[inline(always)]
fn bf16_pair(pair: &[f32]) -> u32 {
    let lo = pair.first().map_or(0, |&v| u32::from(to_bf16(v)));
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

simd_fn! {
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
    use crate::bf16::round;
    use crate::rows::Act;
    use crate::test_util::pseudo_random;

    /// `x · wᵀ` in f64, with `x` and `w` rounded to bf16 for [`Kind::Bf16`].
    fn reference(x: &[f32], w: &[f32], in_dim: usize, kind: Kind) -> Vec<f64> {
        let value = |v: f32| f64::from(if kind == Kind::Bf16 { round(v) } else { v });
        let rows = x.len() / in_dim;
        let out_dim = w.len() / in_dim;
        let mut out = vec![0f64; rows * out_dim];
        for r in 0..rows {
            for n in 0..out_dim {
                out[r * out_dim + n] = (0..in_dim)
                    .map(|k| value(x[r * in_dim + k]) * value(w[n * in_dim + k]))
                    .sum();
            }
        }
        out
    }

    /// Partial tiles and panels, odd input widths, several tasks each way; on the portable
    /// kernels, and on the instructions where the CPU has them (the two bit for bit).
    #[test]
    fn matches_the_product_and_the_kernels_their_twins() {
        let shapes = [
            (13usize, 37usize, 21usize),
            (1, 5, 3),
            (25, 64, 48),
            (200, 71, 300),
        ];
        for kind in [Kind::F32, Kind::Bf16] {
            for &(rows, in_dim, out_dim) in &shapes {
                let x = pseudo_random(rows * in_dim, 7);
                let w = pseudo_random(out_dim * in_dim, 8);
                let bias = pseudo_random(out_dim, 9);
                let gelu = Epilogue::BiasAct {
                    bias: &bias,
                    act: Act::GeluErf,
                };
                let want = reference(&x, &w, in_dim, kind);
                let portable = Avx512Linear::build(&w, (out_dim, in_dim), kind, false).unwrap();
                let mut got = vec![f32::NAN; rows * out_dim];
                let mut pairs = Vec::new();
                portable.forward(&x, &mut got, None, &mut pairs).unwrap();
                let max = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (f64::from(*g) - w).abs())
                    .fold(0f64, f64::max);
                println!("{kind:?} {rows}x{in_dim}x{out_dim}: max |portable - f64| {max:.2e}");
                assert!(max < 1e-5, "{max}");

                let mut fused = vec![f32::NAN; rows * out_dim];
                portable
                    .forward(&x, &mut fused, Some(&gelu), &mut pairs)
                    .unwrap();
                for row in got.chunks_exact_mut(out_dim) {
                    gelu.apply(row, 0);
                }
                assert_eq!(fused, got);

                if kind.runs_here() {
                    let fast = Avx512Linear::build(&w, (out_dim, in_dim), kind, true).unwrap();
                    let mut kernel = vec![f32::NAN; rows * out_dim];
                    fast.forward(&x, &mut kernel, Some(&gelu), &mut pairs)
                        .unwrap();
                    // f32: bit for bit. bf16: real CPUs need not round the two products of a
                    // pair in the SDM's order, so equal to f32 summation error.
                    let worst = kernel
                        .iter()
                        .zip(&fused)
                        .map(|(a, b)| match kind {
                            Kind::F32 if a.to_bits() == b.to_bits() => 0.0,
                            Kind::F32 => f32::INFINITY,
                            Kind::Bf16 => (a - b).abs(),
                        })
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-5,
                        "{kind:?} kernel differs from its twin: {worst}"
                    );
                } else {
                    println!("{kind:?}: no such AVX-512 here: checked the portable kernel only");
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        for kind in [Kind::F32, Kind::Bf16] {
            assert!(Avx512Linear::build(&[0.0; 6], (4, 2), kind, false).is_err());
            let q = Avx512Linear::build(&[0.0; 6], (3, 2), kind, false).unwrap();
            let mut pairs = Vec::new();
            assert!(q
                .forward(&[0.0; 4], &mut [0.0; 5], None, &mut pairs)
                .is_err());
            let short_bias = Epilogue::BiasAct {
                bias: &[0.0; 2],
                act: Act::Relu,
            };
            assert!(q
                .forward(&[0.0; 4], &mut [0.0; 6], Some(&short_bias), &mut pairs)
                .is_err());
        }
    }
}
