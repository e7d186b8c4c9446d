//! Dynamic int8 quantisation of the encoder's linear layers (`--dtype int8`).
//!
//! Weights are quantised once, symmetric per output channel (`w ≈ s_n · q`, `q ∈ [-127, 127]`);
//! activations are quantised at each call, asymmetric per token row (`x ≈ s_m · (q - z_m)`,
//! `q ∈ [0, 255]`, the range always holding 0, so post-GELU rows keep all 256 levels). The
//! products are summed exactly in i32, the zero point is removed through each channel's weight
//! sum, and the result is scaled back to f32.
//!
//! **Pair-bounded weights.** Each channel's scale is set so that for every pair of inputs
//! `k = 2j, 2j + 1` the weights of one sign sum to at most 128 in magnitude
//! (`quantize_weight_row`). Then no pair of u8 x i8 products leaves the i16 range
//! (255 · 128 = 32640), so AVX2's `vpmaddubsw` sums them exactly: 32 multiply-adds per
//! instruction with no saturation, where `vpmaddwd` on widened values did 16. On random
//! weights the scale is ~1.3x that of `max |w| / 127` (`benchmarks/int8_sim.py`); 7-bit
//! weights (what `vpmaddubsw` needs without the pair bound) would double it.
//!
//! One weight layout: panels of 32 output columns; within a panel, for each group of 4 inputs,
//! 32 groups of 4 i8 (`k` ascending from the low byte); inputs as u8, 4 per 32-bit broadcast.
//! Three kernels read it ([`Kernel`]), and all three compute the same exact sums, so the same
//! outputs bit for bit: AVX512-VNNI `vpdpbusd` ([`crate::avx512::int8_tile`]), AVX2
//! `vpmaddubsw` (`avx2::tile`) and plain Rust ([`crate::avx512::int8_tile_portable`]); the
//! plan picks one ([`KernelPlan::int8_kernel`]).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::avx512::{self, Tile, COLS as PANEL, MAX_ROWS as TILE_ROWS};
use crate::rows::Epilogue;
use crate::{
    check_epilogue, check_io, check_weight, for_each_tile, simd_fn, CpuFeatures, Error, KernelPlan,
    Result, SharedMut,
};

thread_local! {
    /// The quantised inputs of [`QuantLinear::forward`], kept across calls (a fresh buffer of
    /// several MiB per call costs its page faults every time).
    static QUANTISED_INPUTS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// 12-row tiles per parallel task (96 rows: 288 KiB of u8 inputs at `in_dim` 3072, in L2).
const CHUNK_TILES: usize = 8;
/// Panels of 32 columns per parallel task.
const CHUNK_PANELS: usize = 4;
/// The most a pair of quantised weights of one sign may sum to in magnitude: with u8 inputs
/// (at most 255) a pair's products then stay inside i16, as `vpmaddubsw` needs.
const PAIR_BOUND: i32 = 128;
/// The widest input whose sums `Σ_k (x_k - zero) · q_k` are sure to fit i32
/// (`255 · 127 · in_dim < 2³¹`); DeBERTa's widest layers have 6144.
const MAX_IN_DIM: usize = 66_000;

/// An `nn.Linear` weight `[out, in]` quantised to int8, packed for [`Kernel`].
pub struct QuantLinear {
    in_dim: usize,
    out_dim: usize,
    /// Groups of 4 inputs (`in_dim` rounded up).
    quads: usize,
    /// `[panels][quads][32]` groups of 4 i8, zero-padded.
    packed: Vec<u32>,
    kernel: Kernel,
    /// Per output channel (padded with 1 to whole panels).
    scales: Vec<f32>,
    /// `Σ_k q[n, k]` per output channel, to remove the activations' zero point (padded with 0
    /// to whole panels).
    sums: Vec<i32>,
}

/// Which instructions sum a [`QuantLinear`]'s products (the same sums on each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX512-VNNI `vpdpbusd`: 64 multiply-adds per instruction.
    Vnni,
    /// AVX2 `vpmaddubsw` + `vpmaddwd` + `vpaddd`: 32 multiply-adds per 3 instructions.
    Avx2,
    /// Plain Rust (the other two's twin, for CPUs with neither).
    Portable,
}

impl Kernel {
    /// The kernel's name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vnni => "avx512-vnni vpdpbusd",
            Kernel::Avx2 => "avx2 vpmaddubsw",
            Kernel::Portable => "portable int8",
        }
    }

    /// Whether this CPU has the kernel's instructions.
    pub fn runs_here(self) -> bool {
        let cpu = CpuFeatures::detect();
        match self {
            Kernel::Vnni => cpu.avx512f && cpu.avx512vnni,
            Kernel::Avx2 => cpu.avx2,
            Kernel::Portable => true,
        }
    }

    /// The CPU features the kernel needs.
    fn needs(self) -> &'static str {
        match self {
            Kernel::Vnni => "AVX512F and AVX512-VNNI",
            Kernel::Avx2 => "AVX2",
            Kernel::Portable => "nothing",
        }
    }
}

impl QuantLinear {
    /// Quantises `w [out_dim, in_dim]` (row-major) for the plan's kernel.
    pub fn new(plan: &KernelPlan, w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        Self::with_kernel(w, out_dim, in_dim, plan.int8_kernel())
    }

    /// Quantises `w [out_dim, in_dim]` for `kernel` (an error where the CPU lacks its
    /// instructions).
    pub fn with_kernel(w: &[f32], out_dim: usize, in_dim: usize, kernel: Kernel) -> Result<Self> {
        check_weight("int8", w, out_dim, in_dim)?;
        if in_dim > MAX_IN_DIM {
            return Err(Error::shape(
                "int8",
                format!(
                    "an input width of {in_dim} could overflow the i32 sums (at most {MAX_IN_DIM})"
                ),
            ));
        }
        if !kernel.runs_here() {
            return Err(Error::Unsupported {
                kernel: kernel.name(),
                needs: kernel.needs(),
            });
        }
        let padded = out_dim.div_ceil(PANEL) * PANEL;
        let mut scales = vec![1f32; padded];
        let mut sums = vec![0i32; padded];
        let mut q = vec![0i8; out_dim * in_dim];
        q.par_chunks_mut(in_dim)
            .zip(w.par_chunks(in_dim))
            .zip(scales.par_iter_mut().zip(sums.par_iter_mut()))
            .for_each(|((q_row, row), (scale, sum))| {
                *scale = quantize_weight_row(row, q_row);
                *sum = q_row.iter().map(|&v| i32::from(v)).sum();
            });
        let (quads, packed) = pack_quads(&q, out_dim, in_dim);
        Ok(Self {
            in_dim,
            out_dim,
            quads,
            packed,
            kernel,
            scales,
            sums,
        })
    }

    /// `out[rows, out_dim] = x[rows, in_dim] · wᵀ` through int8 values, then the `epilogue`
    /// (bias, activation), if any, applied to each tile as it is stored.
    pub fn forward(&self, x: &[f32], out: &mut [f32], epilogue: Option<&Epilogue>) -> Result<()> {
        let rows = check_io("int8", x, out, self.in_dim, self.out_dim)?;
        check_epilogue("int8 linear", epilogue, self.out_dim)?;
        if rows == 0 {
            return Ok(());
        }
        QUANTISED_INPUTS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut qx) => self.multiply(x, rows, &mut qx, out, epilogue),
            Err(_) => self.multiply(x, rows, &mut Vec::new(), out, epilogue),
        });
        Ok(())
    }

    /// [`Self::forward`] after its checks, with `qx` to quantise the inputs into.
    fn multiply(
        &self,
        x: &[f32],
        rows: usize,
        qx: &mut Vec<u32>,
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
    ) {
        let quads = self.quads;
        qx.clear();
        qx.resize(rows * quads, 0);
        let row_params = quantize_rows(as_bytes_mut(qx), x, self.in_dim, 4 * quads);
        let dst = SharedMut(out.as_mut_ptr());
        let panels = self.out_dim.div_ceil(PANEL);
        let grid = (rows, TILE_ROWS, CHUNK_TILES);
        for_each_tile(grid, (panels, CHUNK_PANELS), |r0, tile_rows, panel| {
            let tile = Tile {
                a: qx[r0 * quads..].as_ptr(),
                lda: quads,
                rows: tile_rows,
                b: self.packed[panel * quads * PANEL..].as_ptr(),
                groups: quads,
            };
            let mut acc = [[0i32; PANEL]; TILE_ROWS];
            // SAFETY: `qx` holds the tile's rows of `quads` groups and `packed` the panel's
            // `quads x 32`; the kernel was checked against the CPU when the weights were
            // packed. (Exactness on AVX2 also needs the pair bound, which
            // `quantize_weight_row` gave every weight.)
            unsafe { sum_tile(&tile, &mut acc, self.kernel) };
            let target = self.tile_out(dst, (r0, tile_rows), panel, &row_params, epilogue);
            // SAFETY: `for_each_tile` hands each tile to one call only; its rows x columns
            // lie inside the `[rows, out_dim]` output; the epilogue fits.
            unsafe { store_tile(&target, &acc) };
        });
    }

    /// Where the tile of rows `r0..r0 + n` x panel `panel` of the `[rows, out_dim]` output at
    /// `dst` goes.
    fn tile_out<'a>(
        &'a self,
        dst: SharedMut,
        (r0, n): (usize, usize),
        panel: usize,
        row_params: &'a [RowParams],
        epilogue: Option<&'a Epilogue<'a>>,
    ) -> TileOut<'a> {
        let col0 = panel * PANEL;
        TileOut {
            out: dst.get().wrapping_add(r0 * self.out_dim + col0),
            ldc: self.out_dim,
            col0,
            cols: (self.out_dim - col0).min(PANEL),
            rows: &row_params[r0..r0 + n],
            sums: &self.sums[col0..col0 + PANEL],
            scales: &self.scales[col0..col0 + PANEL],
            epilogue,
        }
    }
}

/// Quantises one output channel's weights into `q` and returns their scale `s` (`row ≈ s · q`).
///
/// `s` is the largest magnitude of a pair's same-sign weights, `max_j max(Σ w⁺, Σ w⁻)` over
/// the pairs `k = 2j, 2j + 1`, divided by 127 (it is at least `max |w| / 127`, since a
/// weight's own sign bucket holds it). Each rounded value moves by at most 0.5, so a pair's
/// same-sign values sum to at most 128 in magnitude ([`PAIR_BOUND`]); a last pass enforces that
/// bound outright, so the kernels' exactness does not hang on float rounding.
///
/// The sums are taken in f64 (two weights near `f32::MAX` do not overflow), `s` is at least
/// the smallest normal f32 (subnormal weights do not make it 0), and an all-zero row gets 1.
/// An infinite weight makes `s` infinite and the channel's outputs NaN, as f32 would be; NaN
/// weights count as 0.
pub(crate) fn quantize_weight_row(row: &[f32], q: &mut [i8]) -> f32 {
    let bound = row.chunks(2).fold(0f64, |m, pair| {
        let (pos, neg) = pair.iter().fold((0f64, 0f64), |(p, n), &v| {
            let v = f64::from(v);
            (p + v.max(0.0), n + (-v).max(0.0))
        });
        m.max(pos).max(neg)
    });
    let s = if bound > 0.0 {
        ((bound / 127.0) as f32).max(f32::MIN_POSITIVE)
    } else {
        1.0
    };
    for (qv, &v) in q.iter_mut().zip(row) {
        // `as` maps NaN to 0.
        *qv = (v / s).round().clamp(-127.0, 127.0) as i8;
    }
    for pair in q.chunks_mut(2) {
        enforce_pair_bound(pair);
    }
    s
}

simd_fn! {
/// [`quantize_weight_row`] in f32, for operands quantised at every call (the attention
/// products' right operands): the same pair bound and the same guarantee, rounding ties to
/// even. Falls back to [`quantize_weight_row`] where the f32 bound overflows.
pub(crate) fn quantize_column(column: &[f32], q: &mut [i8]) -> f32 {
    let mut bound = 0f32;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::features::avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        (bound, done) = unsafe { avx2::pair_bound(column) };
    }
    for pair in column[done..].chunks(2) {
        let (pos, neg) = pair
            .iter()
            .fold((0f32, 0f32), |(p, n), &v| (p + v.max(0.0), n + (-v).max(0.0)));
        bound = bound.max(pos).max(neg);
    }
    if !bound.is_finite() {
        return quantize_weight_row(column, q);
    }
    let s = if bound > 0.0 {
        (bound / 127.0).max(f32::MIN_POSITIVE)
    } else {
        1.0
    };
    let inv = 1.0 / s;
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::features::avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        done = unsafe { avx2::symmetric_levels(q, column, inv) };
    }
    for (qv, &v) in q.iter_mut().zip(column).skip(done) {
        // NaN stays NaN through `clamp` and becomes 0 through `as`.
        *qv = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i32 as i8;
    }
    for pair in q.chunks_mut(2) {
        enforce_pair_bound(pair);
    }
    s
}
}

/// Shrinks the larger of a pair's same-sign values until their magnitudes sum to at most
/// [`PAIR_BOUND`].
fn enforce_pair_bound(pair: &mut [i8]) {
    if let [a, b] = pair {
        let (ia, ib) = (i32::from(*a), i32::from(*b));
        let excess = (ia.abs() + ib.abs() - PAIR_BOUND).max(0);
        if excess > 0 && ia.signum() == ib.signum() {
            let larger = if ia.abs() >= ib.abs() { a } else { b };
            let shrunk = i32::from(*larger) - larger.signum() as i32 * excess;
            *larger = shrunk as i8;
        }
    }
}

/// `q [out_dim, in_dim]` as `[panels][quads][32]` groups of 4, zero-padded; returns `quads`
/// and the packed values.
fn pack_quads(q: &[i8], out_dim: usize, in_dim: usize) -> (usize, Vec<u32>) {
    let quads = in_dim.div_ceil(4);
    let mut packed = vec![0u32; out_dim.div_ceil(PANEL) * quads * PANEL];
    let bytes = as_bytes_mut(&mut packed);
    for (n, row) in q.chunks_exact(in_dim).enumerate() {
        let (panel, col) = (n / PANEL, n % PANEL);
        for (k, &v) in row.iter().enumerate() {
            bytes[((panel * quads + k / 4) * PANEL + col) * 4 + k % 4] = v as u8;
        }
    }
    (quads, packed)
}

/// The bytes of `v` (groups of 4 values, in memory order).
pub(crate) fn as_bytes_mut(v: &mut [u32]) -> &mut [u8] {
    // SAFETY: the same memory, as bytes: u8 needs no alignment and every byte pattern is a
    // valid u8 and, written back, a valid u32.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) }
}

/// One tile's exact sums on `kernel` (on [`Kernel::Avx2`], exact where every same-sign pair of
/// weights is within [`PAIR_BOUND`]; beyond it `vpmaddubsw` saturates: wrong sums, not
/// undefined behaviour).
///
/// # Safety
/// As for [`avx512::int8_tile`] (its CPU features only for [`Kernel::Vnni`], AVX2 for
/// [`Kernel::Avx2`]).
pub(crate) unsafe fn sum_tile(tile: &Tile, acc: &mut [[i32; PANEL]; TILE_ROWS], kernel: Kernel) {
    // SAFETY: the caller's contract, with the CPU features of the kernel it names.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match kernel {
            Kernel::Vnni => return avx512::int8_tile(tile, acc),
            Kernel::Avx2 => return avx2::tile(tile, acc),
            Kernel::Portable => {}
        }
    }
    let _ = kernel;
    // SAFETY: the caller's contract (the portable kernel needs no CPU feature).
    unsafe { avx512::int8_tile_portable(tile, acc) };
}

/// Where one tile's sums go: `rows.len()` rows x `cols` columns at `out` (row stride `ldc`),
/// output columns `col0..`, scaled back to f32 and then through the epilogue.
struct TileOut<'a> {
    out: *mut f32,
    ldc: usize,
    col0: usize,
    cols: usize,
    rows: &'a [RowParams],
    /// The panel's 32 weight sums and scales.
    sums: &'a [i32],
    scales: &'a [f32],
    epilogue: Option<&'a Epilogue<'a>>,
}

impl TileOut<'_> {
    /// Stores row `r` from its exact sums (one per panel column): `(acc - zero · Σq) · s_row ·
    /// s_col`.
    ///
    /// # Safety
    /// Row `r < rows.len()` of the tile (`cols` values) is valid and the caller's alone.
    #[inline(always)]
    unsafe fn store_row(&self, r: usize, acc: &[i32]) {
        let RowParams { scale, zero } = self.rows[r];
        let mut vals = [0f32; PANEL];
        for (((v, &a), &sum), &col_scale) in
            vals.iter_mut().zip(acc).zip(self.sums).zip(self.scales)
        {
            // Wrapping, as the kernels' sums: the true value fits i32 ([`MAX_IN_DIM`]).
            *v = a.wrapping_sub(zero.wrapping_mul(sum)) as f32 * scale * col_scale;
        }
        // SAFETY: row r's `cols` values are valid and the caller's alone (contract).
        let seg = unsafe { std::slice::from_raw_parts_mut(self.out.add(r * self.ldc), self.cols) };
        seg.copy_from_slice(&vals[..self.cols]);
        if let Some(epilogue) = self.epilogue {
            epilogue.apply(seg, self.col0);
        }
    }
}

simd_fn! {
/// Stores every row of a tile through `target`, compiled for AVX2 + FMA where the CPU has them
/// (the epilogue's GELU is most of the work).
///
/// # Safety
/// As for [`TileOut::store_row`], for each of the target's rows.
unsafe fn store_tile(target: &TileOut, acc: &[[i32; PANEL]; TILE_ROWS]) {
    for (r, acc_row) in acc.iter().enumerate().take(target.rows.len()) {
        // SAFETY: r < rows.len(); the caller's contract for each row.
        unsafe { target.store_row(r, acc_row) };
    }
}
}

/// One token row's quantisation: `x ≈ scale · (q - zero)`.
#[derive(Clone, Copy)]
pub(crate) struct RowParams {
    pub(crate) scale: f32,
    pub(crate) zero: i32,
}

/// Per-row asymmetric quantisation of `x [rows, in_dim]` into `q`'s rows of `stride` u8 (the
/// padding left 0), in parallel.
fn quantize_rows(q: &mut [u8], x: &[f32], in_dim: usize, stride: usize) -> Vec<RowParams> {
    let rows = x.len() / in_dim;
    let mut params = vec![
        RowParams {
            scale: 1.0,
            zero: 0
        };
        rows
    ];
    q.par_chunks_mut(stride)
        .zip(params.par_iter_mut())
        .zip(x.par_chunks(in_dim))
        .with_min_len(8)
        .for_each(|((q_row, p), x_row)| *p = quantize_row(q_row, x_row));
    params
}

/// A row's quantisation to `[0, 255]` from its range (which always holds 0), and the factor
/// and offset that map a value to its level.
#[inline(always)]
fn row_quantisation(x_row: &[f32]) -> (RowParams, f32, f32) {
    // Lane-wise extremes (a single running min/max does not vectorise).
    let mut lanes_lo = [0f32; 8];
    let mut lanes_hi = [0f32; 8];
    let mut chunks = x_row.chunks_exact(8);
    for chunk in &mut chunks {
        for ((lo, hi), &v) in lanes_lo.iter_mut().zip(&mut lanes_hi).zip(chunk) {
            *lo = lo.min(v);
            *hi = hi.max(v);
        }
    }
    let (lo, hi) = chunks
        .remainder()
        .iter()
        .map(|&v| (v, v))
        .chain(lanes_lo.into_iter().zip(lanes_hi))
        .fold((0f32, 0f32), |(lo, hi), (l, h)| (lo.min(l), hi.max(h)));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    let params = RowParams {
        scale,
        zero: zero as i32,
    };
    (params, 1.0 / scale, zero)
}

/// `v`'s level in `[0, 255]` (round half to even, as `vroundps` does).
#[inline(always)]
fn level(v: f32, inv: f32, zero: f32) -> f32 {
    (v * inv + zero).round_ties_even().clamp(0.0, 255.0)
}

simd_fn! {
/// Quantises one row to `[0, 255]`.
pub(crate) fn quantize_row(q_row: &mut [u8], x_row: &[f32]) -> RowParams {
    let (params, inv, zero) = row_quantisation(x_row);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if crate::features::avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        done = unsafe { avx2::levels(q_row, x_row, inv, zero) };
    }
    for (qv, &v) in q_row.iter_mut().zip(x_row).skip(done) {
        *qv = level(v, inv, zero) as u8;
    }
    params
}
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Tile, PANEL, TILE_ROWS};

    /// Rows per micro-kernel call: 3 rows x 32 columns in 12 accumulators.
    const ROWS: usize = 3;

    /// The bytes of 4 vectors of 8 i32 (each within the target range), in order, through
    /// `pack` (saturating i32 -> i16 -> 8-bit, which interleaves the 128-bit lanes).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn pack_bytes(v: [__m256i; 4], signed: bool) -> __m256i {
        let bytes = if signed {
            let (lo, hi) = (
                _mm256_packs_epi32(v[0], v[1]),
                _mm256_packs_epi32(v[2], v[3]),
            );
            _mm256_packs_epi16(lo, hi)
        } else {
            let (lo, hi) = (
                _mm256_packus_epi32(v[0], v[1]),
                _mm256_packus_epi32(v[2], v[3]),
            );
            _mm256_packus_epi16(lo, hi)
        };
        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// `q[i] = level(x[i], inv, zero)` for whole groups of 32 values, as [`super::level`]
    /// computes it (multiply, add, round half to even, clamp; NaN to 0); returns how many
    /// were done.
    ///
    /// # Safety
    /// AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn levels(q: &mut [u8], x: &[f32], inv: f32, zero: f32) -> usize {
        let n = q.len().min(x.len()) / 32 * 32;
        let (inv, zero) = (_mm256_set1_ps(inv), _mm256_set1_ps(zero));
        let (lo, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
        for i in (0..n).step_by(32) {
            // SAFETY: i + 32 <= n: the loads and the store stay inside `x` and `q`.
            unsafe {
                let v: [__m256i; 4] = std::array::from_fn(|j| {
                    let v = _mm256_loadu_ps(x.as_ptr().add(i + 8 * j));
                    let v = _mm256_add_ps(_mm256_mul_ps(v, inv), zero);
                    let v = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                    // max / min return their second operand when one is NaN: NaN stays NaN
                    // and converts to i32::MIN, which packs to 0.
                    _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, v)))
                });
                _mm256_storeu_si256(q.as_mut_ptr().add(i).cast(), pack_bytes(v, false));
            }
        }
        n
    }

    /// `q[i] = round_ties_even(x[i] * inv)` clamped to ±127 (NaN to 0) for whole groups of
    /// 32 values; returns how many were done.
    ///
    /// # Safety
    /// AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn symmetric_levels(q: &mut [i8], x: &[f32], inv: f32) -> usize {
        let n = q.len().min(x.len()) / 32 * 32;
        let inv = _mm256_set1_ps(inv);
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        for i in (0..n).step_by(32) {
            // SAFETY: i + 32 <= n: the loads and the store stay inside `x` and `q`.
            unsafe {
                let v: [__m256i; 4] = std::array::from_fn(|j| {
                    let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i + 8 * j)), inv);
                    let v = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                    let v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
                    // NaN converts to i32::MIN; zero it, as `as` does.
                    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
                    _mm256_cvtps_epi32(_mm256_andnot_ps(nan, v))
                });
                _mm256_storeu_si256(q.as_mut_ptr().add(i).cast(), pack_bytes(v, true));
            }
        }
        n
    }

    /// The largest same-sign pair sum, `max(max(a, 0) + max(b, 0), max(-a, 0) + max(-b, 0))`
    /// over the pairs `a, b` at `2j, 2j + 1`, of whole groups of 16 values, and how many values
    /// that covered (even, so the caller's pairs go on from there). NaN counts as 0.
    ///
    /// # Safety
    /// AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn pair_bound(x: &[f32]) -> (f32, usize) {
        let n = x.len() / 16 * 16;
        let zero = _mm256_setzero_ps();
        let mut bound = zero;
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 <= n: the loads stay inside `x`.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_ps(x.as_ptr().add(i)),
                    _mm256_loadu_ps(x.as_ptr().add(i + 8)),
                )
            };
            // `max(v, 0)` returns 0 for NaN (maxps returns its second operand then), as
            // `f32::max` does; `hadd` sums the adjacent pairs.
            let pos = _mm256_hadd_ps(_mm256_max_ps(a, zero), _mm256_max_ps(b, zero));
            let (neg_a, neg_b) = (_mm256_sub_ps(zero, a), _mm256_sub_ps(zero, b));
            let neg = _mm256_hadd_ps(_mm256_max_ps(neg_a, zero), _mm256_max_ps(neg_b, zero));
            bound = _mm256_max_ps(bound, _mm256_max_ps(pos, neg));
        }
        let mut lanes = [0f32; 8];
        // SAFETY: 8 values into an array of 8.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), bound) };
        (lanes.into_iter().fold(0f32, f32::max), n)
    }

    /// `out[r][c] = Σ` of u8 x i8 products for the tile's rows, 3 rows at a time (a short last
    /// group repeats its last row; only the tile's rows are stored). Exact where every
    /// same-sign pair of weights (bytes `2j, 2j + 1` of a group) is within
    /// [`super::PAIR_BOUND`] in magnitude, so that `vpmaddubsw` never saturates.
    ///
    /// # Safety
    /// AVX2; as for [`super::avx512::int8_tile`].
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile(t: &Tile, out: &mut [[i32; PANEL]; TILE_ROWS]) {
        // SAFETY: the CPU has AVX2 (contract); each row pointer is one of the tile's rows of `a`
        // (`groups` values), `b` holds the panel, and each stored row of `out` holds 32 values.
        unsafe {
            let mut r0 = 0;
            while r0 < t.rows.min(TILE_ROWS) {
                let rows = (t.rows - r0).min(ROWS);
                let row = |i: usize| t.a.add((r0 + i.min(rows - 1)) * t.lda);
                let acc = if t.groups == 0 {
                    [[_mm256_setzero_si256(); 4]; ROWS]
                } else {
                    micro_kernel([row(0), row(1), row(2)], t.b, t.groups)
                };
                for (i, acc_row) in acc.iter().enumerate().take(rows) {
                    for (h, v) in acc_row.iter().enumerate() {
                        _mm256_storeu_si256(out[r0 + i].as_mut_ptr().add(8 * h).cast(), *v);
                    }
                }
                r0 += ROWS;
            }
        }
    }

    /// `acc[i][h] = Σ_g Σ_j a[i][g] byte j · b[g][8h..8h + 8] byte j` for 3 input rows of
    /// `groups` u32 and a `[groups][32]` u32 panel. Per group and row: one broadcast, then
    /// for each 8 columns `vpmaddubsw` (byte pairs to i16, the weights as a memory operand),
    /// `vpmaddwd` by ones (i16 pairs to i32) and `vpaddd`. In assembly: 12 accumulators, the
    /// ones, a broadcast and a temporary fill 15 of the 16 ymm registers, which LLVM does not
    /// schedule without spills.
    ///
    /// # Safety
    /// AVX2; each `a[i]` holds `groups` values and `b` `32 * groups`, `groups >= 1`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn micro_kernel(
        a: [*const u32; ROWS],
        b: *const u32,
        groups: usize,
    ) -> [[__m256i; 4]; ROWS] {
        // SAFETY: the CPU has AVX2 (contract); the loop reads `groups` values of each row and
        // `32 * groups` of `b` (groups >= 1), touches only the named registers and no stack.
        unsafe {
            let z = _mm256_setzero_si256();
            let ones = _mm256_set1_epi16(1);
            let (mut c00, mut c01, mut c02, mut c03) = (z, z, z, z);
            let (mut c10, mut c11, mut c12, mut c13) = (z, z, z, z);
            let (mut c20, mut c21, mut c22, mut c23) = (z, z, z, z);
            std::arch::asm!(
                "2:",
                "vpbroadcastd ymm15, dword ptr [{a0} + {off}]",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b}]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm0, ymm0, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 32]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm1, ymm1, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 64]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm2, ymm2, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 96]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm3, ymm3, ymm14",
                "vpbroadcastd ymm15, dword ptr [{a1} + {off}]",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b}]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm4, ymm4, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 32]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm5, ymm5, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 64]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm6, ymm6, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 96]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm7, ymm7, ymm14",
                "vpbroadcastd ymm15, dword ptr [{a2} + {off}]",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b}]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm8, ymm8, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 32]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm9, ymm9, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 64]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm10, ymm10, ymm14",
                "vpmaddubsw ymm14, ymm15, ymmword ptr [{b} + 96]",
                "vpmaddwd ymm14, ymm14, ymm13",
                "vpaddd ymm11, ymm11, ymm14",
                "add {off}, 4",
                "add {b}, 128",
                "dec {n}",
                "jnz 2b",
                a0 = in(reg) a[0],
                a1 = in(reg) a[1],
                a2 = in(reg) a[2],
                off = inout(reg) 0usize => _,
                b = inout(reg) b => _,
                n = inout(reg) groups => _,
                in("ymm13") ones,
                inout("ymm0") c00, inout("ymm1") c01, inout("ymm2") c02, inout("ymm3") c03,
                inout("ymm4") c10, inout("ymm5") c11, inout("ymm6") c12, inout("ymm7") c13,
                inout("ymm8") c20, inout("ymm9") c21, inout("ymm10") c22, inout("ymm11") c23,
                out("ymm14") _, out("ymm15") _,
                options(nostack, readonly),
            );
            [
                [c00, c01, c02, c03],
                [c10, c11, c12, c13],
                [c20, c21, c22, c23],
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Act;
    use crate::test_util::pseudo_random;

    /// The kernels this CPU runs.
    fn kernels_here() -> Vec<Kernel> {
        let all = [Kernel::Portable, Kernel::Avx2, Kernel::Vnni];
        let here: Vec<Kernel> = all.into_iter().filter(|k| k.runs_here()).collect();
        println!("int8 kernels on this CPU: {here:?}");
        here
    }

    fn forward(q: &QuantLinear, x: &[f32], epilogue: Option<&Epilogue>) -> Vec<f32> {
        let mut out = vec![f32::NAN; x.len() / q.in_dim * q.out_dim];
        q.forward(x, &mut out, epilogue).unwrap();
        out
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
    }

    #[test]
    fn int8_linear_is_close_to_f32_and_the_epilogue_is_fused() {
        // Odd sizes: a partial tile, a partial panel, an input width off a multiple of 4.
        for &(rows, in_dim, out_dim) in &[(13usize, 37usize, 21usize), (100, 64, 48), (1, 5, 3)] {
            let x = pseudo_random(rows * in_dim, 1);
            let w = pseudo_random(out_dim * in_dim, 2);
            let q = QuantLinear::new(&KernelPlan::detect(), &w, out_dim, in_dim).unwrap();
            let mut got = forward(&q, &x, None);
            let mut worst = 0f32;
            for r in 0..rows {
                for n in 0..out_dim {
                    let want: f32 = (0..in_dim)
                        .map(|k| x[r * in_dim + k] * w[n * in_dim + k])
                        .sum();
                    worst = worst.max((got[r * out_dim + n] - want).abs());
                }
            }
            // Each product's error is about |x||w|/127; the sum grows like sqrt(in_dim).
            println!("{rows}x{in_dim}x{out_dim}: max |int8 - f32| = {worst:.2e}");
            assert!(worst < 0.01 * (in_dim as f32).sqrt(), "{worst}");

            let bias = pseudo_random(out_dim, 3);
            let gelu = Epilogue::BiasAct {
                bias: &bias,
                act: Act::GeluErf,
            };
            let fused = forward(&q, &x, Some(&gelu));
            for row in got.chunks_exact_mut(out_dim) {
                gelu.apply(row, 0);
            }
            assert_eq!(fused, got);
        }
    }

    /// Every kernel the CPU has stores exactly what the portable one stores: the same exact
    /// sums, on partial tiles (1, 13, 25 rows), partial panels, input widths off a multiple
    /// of 4, more than one task each way (200 rows, 300 columns), and the widest inputs.
    #[test]
    fn every_kernel_gives_the_same_outputs_bit_for_bit() {
        let shapes = [
            (13usize, 37usize, 21usize),
            (1, 5, 3),
            (25, 64, 48),
            (200, 70, 300),
            (7, 3072, 40),
        ];
        for &(rows, in_dim, out_dim) in &shapes {
            let x = pseudo_random(rows * in_dim, 4);
            let w = pseudo_random(out_dim * in_dim, 5);
            let bias = pseudo_random(out_dim, 6);
            let gelu = Epilogue::BiasAct {
                bias: &bias,
                act: Act::GeluErf,
            };
            let portable = QuantLinear::with_kernel(&w, out_dim, in_dim, Kernel::Portable).unwrap();
            for kernel in kernels_here() {
                let q = QuantLinear::with_kernel(&w, out_dim, in_dim, kernel).unwrap();
                for epilogue in [None, Some(&gelu)] {
                    let want = forward(&portable, &x, epilogue);
                    let got = forward(&q, &x, epilogue);
                    assert!(
                        same_bits(&want, &got),
                        "{kernel:?} {rows}x{in_dim}x{out_dim}"
                    );
                }
            }
        }
    }

    /// Weights that meet the pair bound with equality, and inputs at the u8 extremes: the
    /// largest pair sums `vpmaddubsw` ever sees (±255 · 128) are still summed exactly.
    #[test]
    fn pair_bound_holds_and_the_worst_pairs_stay_exact() {
        let in_dim = 64;
        // Channels: equal weights (each pair 64 + 64, the bound), one large weight per pair
        // with a small same-sign partner (126 + 1), opposite signs (127 and -127, no bound
        // needed), all negative (-64 - 64), a NaN and an infinity among ordinary values, and
        // random values.
        let mut w = Vec::new();
        w.extend(std::iter::repeat_n(0.5f32, in_dim));
        w.extend((0..in_dim).map(|k| if k % 2 == 0 { 1.0 } else { 1.0 / 127.0 }));
        w.extend((0..in_dim).map(|k| if k % 2 == 0 { 1.0 } else { -1.0 }));
        w.extend(std::iter::repeat_n(-0.25f32, in_dim));
        w.extend((0..in_dim).map(|k| match k {
            3 => f32::NAN,
            8 => f32::INFINITY,
            _ => 0.1,
        }));
        w.extend(pseudo_random(in_dim, 7));
        let out_dim = w.len() / in_dim;
        let mut q = vec![0i8; in_dim];
        for row in w.chunks_exact(in_dim) {
            let s = quantize_weight_row(row, &mut q);
            assert!(s > 0.0 && (s.is_finite() || row.iter().any(|v| v.is_infinite())));
            for pair in q.chunks(2) {
                let (a, b) = (i32::from(pair[0]), i32::from(pair[1]));
                assert!(a.abs() <= 127 && b.abs() <= 127);
                let (pos, neg) = (a.max(0) + b.max(0), (-a).max(0) + (-b).max(0));
                assert!(pos <= PAIR_BOUND && neg <= PAIR_BOUND, "{pair:?}");
            }
        }
        let mut q = vec![0i8; 2];
        for (pair, want) in [
            ([100i8, 100], [28i8, 100]),
            ([-90, -70], [-58, -70]),
            ([127, -127], [127, -127]),
            ([64, 64], [64, 64]),
            ([60, 100], [60, 68]),
            ([127, 127], [1, 127]),
            ([-127, -127], [-1, -127]),
            ([0, 0], [0, 0]),
            ([0, 127], [0, 127]),
        ] {
            q.copy_from_slice(&pair);
            enforce_pair_bound(&mut q);
            assert_eq!(q, want, "{pair:?}");
        }
        // Rows of all-255 inputs (constant positive rows), all-0 inputs (constant negative
        // rows) and random rows.
        let rows = 5;
        let mut x = vec![1.0f32; in_dim];
        x.extend(std::iter::repeat_n(-1.0f32, in_dim));
        x.extend(pseudo_random((rows - 2) * in_dim, 8));
        let w_finite: Vec<f32> = w
            .iter()
            .map(|v| if v.is_finite() { *v } else { 0.3 })
            .collect();
        let portable =
            QuantLinear::with_kernel(&w_finite, out_dim, in_dim, Kernel::Portable).unwrap();
        let want = forward(&portable, &x, None);
        // The all-255 row against the equal-weight channel: every pair is 64 + 64 (the bound,
        // reached), each quad sums 255 · 256, and the result is 64 · 64 / 127.
        println!("all-255 row x pair-bound channel: {}", want[0]);
        assert!((want[0] - 64.0 * 64.0 / 127.0).abs() < 1e-3, "{}", want[0]);
        for kernel in kernels_here() {
            let q = QuantLinear::with_kernel(&w_finite, out_dim, in_dim, kernel).unwrap();
            assert!(same_bits(&want, &forward(&q, &x, None)), "{kernel:?}");
        }
        // The channel holding an infinity gives NaN outputs (as f32 would); the others stay
        // finite (the NaN weight counts as 0).
        let with_inf = QuantLinear::with_kernel(&w, out_dim, in_dim, Kernel::Portable).unwrap();
        for row in forward(&with_inf, &x, None).chunks_exact(out_dim) {
            for (n, v) in row.iter().enumerate() {
                assert_eq!(v.is_nan(), n == 4, "channel {n}: {v}");
            }
        }
    }

    /// The AVX2 kernel against the exact sums on hand-packed pairs at the bound (and the
    /// inputs at 255 that make them largest), and, as a control that the comparison can see
    /// saturation, on a pair past it.
    #[test]
    fn avx2_kernel_is_exact_up_to_the_pair_bound_and_saturates_past_it() {
        #[cfg(target_arch = "x86_64")]
        {
            if !Kernel::Avx2.runs_here() {
                println!("no AVX2 here");
                return;
            }
            let sums = |pairs: &[[i8; 2]], x: [u8; 4], kernel: bool| {
                // One group of 4 inputs (two pairs), weights the same in all 32 columns.
                let groups = pairs.len().div_ceil(2);
                let w = |g: usize, j: usize| pairs.get(2 * g + j / 2).map_or(0, |p| p[j % 2]);
                let b: Vec<u32> = (0..groups)
                    .flat_map(|g| {
                        let group = u32::from_le_bytes([0, 1, 2, 3].map(|j| w(g, j) as u8));
                        std::iter::repeat_n(group, PANEL)
                    })
                    .collect();
                let a = vec![u32::from_le_bytes(x); groups * 2];
                let tile = Tile {
                    a: a.as_ptr(),
                    lda: groups,
                    rows: 2,
                    b: b.as_ptr(),
                    groups,
                };
                let mut out = [[0i32; PANEL]; TILE_ROWS];
                // SAFETY: AVX2 is present; `a` holds 2 rows of `groups` and `b` the panel.
                unsafe {
                    if kernel {
                        avx2::tile(&tile, &mut out)
                    } else {
                        avx512::int8_tile_portable(&tile, &mut out)
                    }
                };
                out[1][PANEL - 1]
            };
            let at_bound = [
                [64i8, 64],
                [127, 1],
                [1, 127],
                [-64, -64],
                [-127, -1],
                [127, -127],
            ];
            for x in [[255u8; 4], [255, 0, 0, 255], [0, 255, 255, 0]] {
                for pair in at_bound {
                    let pairs = [pair, pair];
                    assert_eq!(
                        sums(&pairs, x, true),
                        sums(&pairs, x, false),
                        "{pair:?} {x:?}"
                    );
                }
            }
            let past = [[127i8, 127], [127, 127]];
            let (fast, exact) = (sums(&past, [255; 4], true), sums(&past, [255; 4], false));
            println!("past the bound: vpmaddubsw {fast}, exact {exact}");
            assert_eq!(exact, 4 * 255 * 127);
            assert_eq!(fast, 2 * 32767);
        }
    }

    /// The vector conversions give the scalar formulas' values exactly: ties, NaN, infinities
    /// and the clamps included, for lengths that leave a scalar tail.
    #[test]
    fn vector_quantisation_equals_the_scalar_formulas() {
        let mut x = pseudo_random(101, 9);
        x[3] = f32::NAN;
        x[40] = f32::INFINITY;
        x[41] = f32::NEG_INFINITY;
        x[70] = 1e30;
        // Halfway values (the row's scale is 1 here, zero point 0 or 128).
        let mut ties: Vec<f32> = (0..96).map(|i| i as f32 * 0.5 - 24.0).collect();
        ties[0] = 127.5;
        ties[1] = -127.5;
        for row in [&x[..], &ties[..], &x[..33]] {
            let mut q = vec![0u8; row.len()];
            let p = quantize_row(&mut q, row);
            let (_, inv, zero) = row_quantisation(row);
            let want: Vec<u8> = row.iter().map(|&v| level(v, inv, zero) as u8).collect();
            assert_eq!(q, want, "scale {} zero {}", p.scale, p.zero);

            let finite: Vec<f32> = row
                .iter()
                .map(|&v| if v.is_finite() { v } else { 0.0 })
                .collect();
            for column in [row, &finite[..]] {
                let mut q = vec![0i8; column.len()];
                let s = quantize_column(column, &mut q);
                if !s.is_finite() {
                    continue;
                }
                let inv = 1.0 / s;
                let mut want: Vec<i8> = column
                    .iter()
                    .map(|&v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8)
                    .collect();
                for pair in want.chunks_mut(2) {
                    enforce_pair_bound(pair);
                }
                assert_eq!(q, want, "scale {s}");
                for pair in q.chunks(2) {
                    let (pos, neg) = pair.iter().fold((0, 0), |(p, n), &v| {
                        (p + i32::from(v).max(0), n + (-i32::from(v)).max(0))
                    });
                    assert!(pos <= PAIR_BOUND && neg <= PAIR_BOUND, "{pair:?}");
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(QuantLinear::new(&KernelPlan::detect(), &[0.0; 6], 4, 2).is_err());
        for kernel in kernels_here() {
            let q = QuantLinear::with_kernel(&[0.0; 6], 3, 2, kernel).unwrap();
            assert!(q.forward(&[0.0; 4], &mut [0.0; 5], None).is_err());
            let short_bias = Epilogue::BiasAct {
                bias: &[0.0; 2],
                act: Act::Relu,
            };
            assert!(q
                .forward(&[0.0; 4], &mut [0.0; 6], Some(&short_bias))
                .is_err());
        }
        let wide = MAX_IN_DIM + 1;
        assert!(QuantLinear::new(&KernelPlan::detect(), &vec![0.0; wide], 1, wide).is_err());
        for kernel in [Kernel::Avx2, Kernel::Vnni] {
            if !kernel.runs_here() {
                assert!(QuantLinear::with_kernel(&[0.0; 6], 3, 2, kernel).is_err());
            }
        }
    }
}
