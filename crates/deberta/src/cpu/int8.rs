//! Dynamic int8 quantisation of the encoder's linear layers (`--dtype int8`).
//!
//! Weights are quantised once, symmetric per output channel (`w ≈ s_n · q`, `q ∈ [-127, 127]`);
//! activations are quantised at each call, asymmetric per token row (`x ≈ s_m · (q - z_m)`,
//! `q ∈ [0, 255]`, the range always holding 0, so post-GELU rows keep all 256 levels). The
//! products are summed exactly in i32 (`vpmaddwd` on values widened to i16 as they are loaded:
//! 16 multiply-adds per AVX2 instruction, twice the f32 FMA rate, and no `vpmaddubsw`
//! saturation), the zero point is
//! removed through each channel's weight sum, and the result is scaled back to f32.
//!
//! Two weight layouts, chosen once per CPU ([`Layout`]); both give the same exact sums, so the
//! same outputs bit for bit:
//! - pairs (AVX2, or plain Rust): panels of 16 output columns; within a panel, for each pair of
//!   inputs `k, k+1`, 16 `(q[n, k], q[n, k+1])` i8 pairs, so one 128-bit load, widened, feeds 8
//!   columns; inputs as i16;
//! - quads (AVX512-VNNI, [`super::avx512::int8_tile`]): panels of 32 output columns; within a
//!   panel, for each group of 4 inputs, 32 groups of 4 i8 (one 512-bit load per 16 columns);
//!   inputs as u8, 4 per broadcast, multiplied and summed by `vpdpbusd` with no saturation.

use rayon::prelude::*;

use super::avx512::{self, Tile, COLS as QUAD_PANEL, MAX_ROWS as QUAD_TILE_ROWS};
use super::rows::Epilogue;
use super::{check_epilogue, check_io, check_weight, for_each_tile, simd_fn, Avx512, SharedMut};
use crate::{Error, Result};

/// Output columns per weight panel.
const PANEL: usize = 16;
/// Token rows per micro-tile (12 accumulators + 2 weight registers + 1 broadcast = 15 ymm).
const TILE_ROWS: usize = 6;
/// Tiles of rows per parallel task (96 rows, kept in L2 while the task sweeps its panels).
const CHUNK_TILES: usize = 16;
/// Panels per parallel task.
const CHUNK_PANELS: usize = 8;
/// Quad layout: 12-row tiles per parallel task (96 rows: 288 KiB of u8 inputs at
/// `in_dim` 3072, in L2).
const QUAD_CHUNK_TILES: usize = 8;
/// Quad layout: panels of 32 columns per parallel task.
const QUAD_CHUNK_PANELS: usize = 4;

/// An `nn.Linear` weight `[out, in]` quantised to int8.
pub struct QuantLinear {
    in_dim: usize,
    out_dim: usize,
    weights: Weights,
    /// Per output channel (padded with 1 to whole panels).
    scales: Vec<f32>,
    /// `Σ_k q[n, k]` per output channel, to remove the activations' zero point (padded with 0
    /// to whole panels).
    sums: Vec<i32>,
}

/// Which weight layout and kernel a [`QuantLinear`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Input pairs, i16 inputs: AVX2 `vpmaddwd`, or plain Rust.
    Pairs,
    /// Input quads, u8 inputs: AVX512-VNNI `vpdpbusd` where `vnni`, else its portable twin
    /// (which only the tests choose).
    Quads { vnni: bool },
}

impl Layout {
    /// Quads on `vpdpbusd` where the CPU has AVX512-VNNI, else pairs; `DEBERTA_CPU_AVX512`
    /// (`0`: pairs; `portable`: quads on the portable kernel) overrides it.
    pub fn for_this_cpu() -> Self {
        match super::avx512_switch() {
            Avx512::Off => Layout::Pairs,
            Avx512::Portable => Layout::Quads { vnni: false },
            Avx512::Auto if vnni_available() => Layout::Quads { vnni: true },
            Avx512::Auto => Layout::Pairs,
        }
    }

    /// The kernel's name, for reports.
    pub fn kernel(self) -> &'static str {
        match self {
            Layout::Quads { vnni: true } => "avx512-vnni vpdpbusd",
            Layout::Quads { vnni: false } => "portable int8 (quads)",
            Layout::Pairs if avx2_available() => "avx2 vpmaddwd",
            Layout::Pairs => "portable int8",
        }
    }
}

/// Whether the pair layout's AVX2 tile runs here.
fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`avx512::int8_tile`] can run here.
fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

enum Weights {
    /// `[panels][pairs][16 columns][2]`.
    Pairs { pairs: usize, packed: Vec<i8> },
    /// `[panels][quads][32 columns]` groups of 4 i8, `k` ascending from the low byte.
    Quads {
        quads: usize,
        packed: Vec<u32>,
        vnni: bool,
    },
}

impl QuantLinear {
    /// Quantises `w [out_dim, in_dim]` (row-major) in this CPU's layout.
    pub fn new(w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        Self::with_layout(w, out_dim, in_dim, Layout::for_this_cpu())
    }

    /// Quantises `w [out_dim, in_dim]` in `layout` (an error for VNNI quads on a CPU without
    /// AVX512-VNNI).
    pub fn with_layout(w: &[f32], out_dim: usize, in_dim: usize, layout: Layout) -> Result<Self> {
        check_weight("int8", w, out_dim, in_dim)?;
        if layout == (Layout::Quads { vnni: true }) && !vnni_available() {
            return Err(Error::Input(
                "int8: this CPU has no AVX512-VNNI for the quad layout".into(),
            ));
        }
        let panel = match layout {
            Layout::Pairs => PANEL,
            Layout::Quads { .. } => QUAD_PANEL,
        };
        let padded = out_dim.div_ceil(panel) * panel;
        let mut scales = vec![1f32; padded];
        let mut sums = vec![0i32; padded];
        let mut q = vec![0i8; out_dim * in_dim];
        for (n, (row, q_row)) in w
            .chunks_exact(in_dim)
            .zip(q.chunks_exact_mut(in_dim))
            .enumerate()
        {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            scales[n] = s;
            for (qv, v) in q_row.iter_mut().zip(row) {
                *qv = (v / s).round().clamp(-127.0, 127.0) as i8;
                sums[n] += i32::from(*qv);
            }
        }
        let weights = match layout {
            Layout::Pairs => pack_pairs(&q, out_dim, in_dim),
            Layout::Quads { vnni } => pack_quads(&q, out_dim, in_dim, vnni),
        };
        Ok(Self {
            in_dim,
            out_dim,
            weights,
            scales,
            sums,
        })
    }

    /// The layout the weights were packed in.
    #[cfg(test)]
    fn layout(&self) -> Layout {
        match self.weights {
            Weights::Pairs { .. } => Layout::Pairs,
            Weights::Quads { vnni, .. } => Layout::Quads { vnni },
        }
    }

    /// `out[rows, out_dim] = x[rows, in_dim] · wᵀ` through int8 values, then the `epilogue`
    /// (bias, activation), if any, applied to each tile as it is stored.
    pub fn forward(&self, x: &[f32], out: &mut [f32], epilogue: Option<&Epilogue>) -> Result<()> {
        let rows = check_io("int8", x, out, self.in_dim, self.out_dim)?;
        check_epilogue("int8 linear", epilogue, self.out_dim)?;
        if rows == 0 {
            return Ok(());
        }
        match &self.weights {
            Weights::Pairs { pairs, packed } => {
                self.forward_pairs(x, rows, out, epilogue, *pairs, packed)
            }
            Weights::Quads {
                quads,
                packed,
                vnni,
            } => self.forward_quads(x, rows, out, epilogue, (*quads, packed), *vnni),
        }
        Ok(())
    }

    /// The pair layout: tiles of up to 6 rows x 16 columns ([`for_each_tile`]).
    fn forward_pairs(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
        pairs: usize,
        packed: &[i8],
    ) {
        let stride = 2 * pairs;
        let mut qx = vec![0i16; rows * stride];
        let row_params = quantize_rows(&mut qx, x, self.in_dim, stride, quantize_row);
        let dst = SharedMut(out.as_mut_ptr());
        let panels = self.out_dim.div_ceil(PANEL);
        let grid = (rows, TILE_ROWS, CHUNK_TILES);
        for_each_tile(grid, (panels, CHUNK_PANELS), |r0, tile_rows, panel| {
            let weights = &packed[panel * pairs * 2 * PANEL..][..pairs * 2 * PANEL];
            let a = &qx[r0 * stride..(r0 + tile_rows) * stride];
            let target = self.tile_out(dst, (r0, tile_rows), (panel, PANEL), &row_params, epilogue);
            // SAFETY: `for_each_tile` hands each tile to one call only; its rows x columns lie
            // inside the `[rows, out_dim]` output; the epilogue fits.
            unsafe { dot_tile(a, stride, weights, pairs, &target) };
        });
    }

    /// The quad layout: tiles of up to 12 rows x 32 columns ([`for_each_tile`]).
    fn forward_quads(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
        (quads, packed): (usize, &[u32]),
        vnni: bool,
    ) {
        let mut qx = vec![0u32; rows * quads];
        let row_params = quantize_rows(
            as_bytes_mut(&mut qx),
            x,
            self.in_dim,
            4 * quads,
            quantize_row_u8,
        );
        let dst = SharedMut(out.as_mut_ptr());
        let panels = self.out_dim.div_ceil(QUAD_PANEL);
        let grid = (rows, QUAD_TILE_ROWS, QUAD_CHUNK_TILES);
        for_each_tile(grid, (panels, QUAD_CHUNK_PANELS), |r0, tile_rows, panel| {
            let tile = Tile {
                a: qx[r0 * quads..].as_ptr(),
                lda: quads,
                rows: tile_rows,
                b: packed[panel * quads * QUAD_PANEL..].as_ptr(),
                groups: quads,
            };
            let mut acc = [[0i32; QUAD_PANEL]; QUAD_TILE_ROWS];
            // SAFETY: `qx` holds the tile's rows of `quads` groups and `packed` the panel's
            // `quads x 32`; `vnni` was checked against the CPU when the weights were packed.
            unsafe { quad_tile(&tile, &mut acc, vnni) };
            let target = self.tile_out(
                dst,
                (r0, tile_rows),
                (panel, QUAD_PANEL),
                &row_params,
                epilogue,
            );
            for (r, acc_row) in acc.iter().enumerate().take(tile_rows) {
                // SAFETY: `for_each_tile` hands each tile to one call only; its rows x
                // columns lie inside the `[rows, out_dim]` output; the epilogue fits.
                unsafe { target.store_row(r, acc_row) };
            }
        });
    }

    /// Where the tile of rows `r0..r0 + n` x panel `panel` (of `width` columns) of the
    /// `[rows, out_dim]` output at `dst` goes.
    fn tile_out<'a>(
        &'a self,
        dst: SharedMut,
        (r0, n): (usize, usize),
        (panel, width): (usize, usize),
        row_params: &'a [RowParams],
        epilogue: Option<&'a Epilogue<'a>>,
    ) -> TileOut<'a> {
        let col0 = panel * width;
        TileOut {
            out: dst.get().wrapping_add(r0 * self.out_dim + col0),
            ldc: self.out_dim,
            col0,
            cols: (self.out_dim - col0).min(width),
            rows: &row_params[r0..r0 + n],
            sums: &self.sums[col0..col0 + width],
            scales: &self.scales[col0..col0 + width],
            epilogue,
        }
    }
}

/// `w`'s int8 values `q [out_dim, in_dim]` as `[panels][pairs][16][2]`, zero-padded.
fn pack_pairs(q: &[i8], out_dim: usize, in_dim: usize) -> Weights {
    let pairs = in_dim.div_ceil(2);
    let mut packed = vec![0i8; out_dim.div_ceil(PANEL) * pairs * 2 * PANEL];
    for (n, row) in q.chunks_exact(in_dim).enumerate() {
        let (panel, col) = (n / PANEL, n % PANEL);
        for (k, &v) in row.iter().enumerate() {
            packed[(panel * pairs + k / 2) * 2 * PANEL + col * 2 + k % 2] = v;
        }
    }
    Weights::Pairs { pairs, packed }
}

/// `q [out_dim, in_dim]` as `[panels][quads][32]` groups of 4, zero-padded.
fn pack_quads(q: &[i8], out_dim: usize, in_dim: usize, vnni: bool) -> Weights {
    let quads = in_dim.div_ceil(4);
    let mut packed = vec![0u32; out_dim.div_ceil(QUAD_PANEL) * quads * QUAD_PANEL];
    let bytes = as_bytes_mut(&mut packed);
    for (n, row) in q.chunks_exact(in_dim).enumerate() {
        let (panel, col) = (n / QUAD_PANEL, n % QUAD_PANEL);
        for (k, &v) in row.iter().enumerate() {
            bytes[((panel * quads + k / 4) * QUAD_PANEL + col) * 4 + k % 4] = v as u8;
        }
    }
    Weights::Quads {
        quads,
        packed,
        vnni,
    }
}

/// The bytes of `v` (groups of 4 values, in memory order).
fn as_bytes_mut(v: &mut [u32]) -> &mut [u8] {
    // SAFETY: the same memory, as bytes: u8 needs no alignment and every byte pattern is a
    // valid u8 and, written back, a valid u32.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 4) }
}

/// One quad tile on `vpdpbusd` or on its portable twin.
///
/// # Safety
/// As for [`avx512::int8_tile`] (its CPU features only when `vnni`).
unsafe fn quad_tile(tile: &Tile, acc: &mut [[i32; QUAD_PANEL]; QUAD_TILE_ROWS], vnni: bool) {
    #[cfg(target_arch = "x86_64")]
    if vnni {
        return avx512::int8_tile(tile, acc);
    }
    let _ = vnni;
    avx512::int8_tile_portable(tile, acc);
}

/// Where one tile's sums go: `rows.len()` rows x `cols` columns at `out` (row stride `ldc`),
/// output columns `col0..`, scaled back to f32 and then through the epilogue.
struct TileOut<'a> {
    out: *mut f32,
    ldc: usize,
    col0: usize,
    cols: usize,
    rows: &'a [RowParams],
    /// The panel's weight sums and scales (16 or 32).
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
        let mut vals = [0f32; QUAD_PANEL];
        for (((v, &a), &sum), &col_scale) in
            vals.iter_mut().zip(acc).zip(self.sums).zip(self.scales)
        {
            *v = (a - zero * sum) as f32 * scale * col_scale;
        }
        let seg = std::slice::from_raw_parts_mut(self.out.add(r * self.ldc), self.cols);
        seg.copy_from_slice(&vals[..self.cols]);
        if let Some(epilogue) = self.epilogue {
            epilogue.apply(seg, self.col0);
        }
    }
}

/// One token row's quantisation: `x ≈ scale · (q - zero)`.
#[derive(Clone, Copy)]
struct RowParams {
    scale: f32,
    zero: i32,
}

/// Per-row asymmetric quantisation of `x [rows, in_dim]` into `q`'s rows of `stride` values
/// (the padding left 0), in parallel, by `quantize` ([`quantize_row`] or [`quantize_row_u8`]).
fn quantize_rows<T: Send>(
    q: &mut [T],
    x: &[f32],
    in_dim: usize,
    stride: usize,
    quantize: fn(&mut [T], &[f32]) -> RowParams,
) -> Vec<RowParams> {
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
        .for_each(|((q_row, p), x_row)| *p = quantize(q_row, x_row));
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
/// Quantises one row to `[0, 255]`, as i16 (the pair layout).
fn quantize_row(q_row: &mut [i16], x_row: &[f32]) -> RowParams {
    let (params, inv, zero) = row_quantisation(x_row);
    for (qv, &v) in q_row.iter_mut().zip(x_row) {
        *qv = level(v, inv, zero) as i16;
    }
    params
}
}

simd_fn! {
/// Quantises one row to `[0, 255]`, as u8 (the quad layout).
fn quantize_row_u8(q_row: &mut [u8], x_row: &[f32]) -> RowParams {
    let (params, inv, zero) = row_quantisation(x_row);
    for (qv, &v) in q_row.iter_mut().zip(x_row) {
        *qv = level(v, inv, zero) as u8;
    }
    params
}
}

/// `Σ_k a[r, k] · w[c, k]` for the tile's rows of `a` (row stride `stride`) against one
/// packed panel, stored through `target`.
///
/// # Safety
/// As for [`TileOut::store_row`], for every row of the tile.
unsafe fn dot_tile(a: &[i16], stride: usize, panel: &[i8], pairs: usize, target: &TileOut) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2_available() {
            // SAFETY: AVX2 is present; `a` holds the tile's rows of `stride >= 2 * pairs`
            // values and `panel` holds `pairs * 32` values (checked by the callers' slicing).
            match target.rows.len() {
                6 => avx2::tile::<6>(a, stride, panel, pairs, target),
                5 => avx2::tile::<5>(a, stride, panel, pairs, target),
                4 => avx2::tile::<4>(a, stride, panel, pairs, target),
                3 => avx2::tile::<3>(a, stride, panel, pairs, target),
                2 => avx2::tile::<2>(a, stride, panel, pairs, target),
                _ => avx2::tile::<1>(a, stride, panel, pairs, target),
            }
            return;
        }
    }
    portable_tile(a, stride, panel, pairs, target);
}

/// The same sums in plain Rust, for CPUs without AVX2.
///
/// # Safety
/// As for [`dot_tile`].
unsafe fn portable_tile(a: &[i16], stride: usize, panel: &[i8], pairs: usize, target: &TileOut) {
    for r in 0..target.rows.len() {
        let a_row = &a[r * stride..r * stride + 2 * pairs];
        let mut acc = [0i32; PANEL];
        for (p, w) in panel.chunks_exact(2 * PANEL).enumerate().take(pairs) {
            let (a0, a1) = (i32::from(a_row[2 * p]), i32::from(a_row[2 * p + 1]));
            for (c, out) in acc.iter_mut().enumerate() {
                *out += a0 * i32::from(w[2 * c]) + a1 * i32::from(w[2 * c + 1]);
            }
        }
        target.store_row(r, &acc);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{TileOut, PANEL};

    /// `R` rows x 16 columns, accumulated in 2R registers of 8 i32, then stored through
    /// `target`.
    ///
    /// # Safety
    /// AVX2 must be available; `a` must hold `R` rows of `stride >= 2 * pairs` i16 and `panel`
    /// `pairs * 32` i8; as for [`TileOut::store_row`] for rows `0..R`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn tile<const R: usize>(
        a: &[i16],
        stride: usize,
        panel: &[i8],
        pairs: usize,
        target: &TileOut,
    ) {
        debug_assert!(a.len() >= (R - 1) * stride + 2 * pairs && panel.len() >= pairs * 32);
        let mut sums = [[_mm256_setzero_si256(); 2]; R];
        let a_ptr = a.as_ptr();
        let w_ptr = panel.as_ptr();
        for p in 0..pairs {
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w_ptr.add(p * 32) as *const __m128i));
            let w1 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128(w_ptr.add(p * 32 + 16) as *const __m128i));
            for (r, sum) in sums.iter_mut().enumerate() {
                let pair = (a_ptr.add(r * stride + 2 * p) as *const i32).read_unaligned();
                let av = _mm256_set1_epi32(pair);
                sum[0] = _mm256_add_epi32(sum[0], _mm256_madd_epi16(av, w0));
                sum[1] = _mm256_add_epi32(sum[1], _mm256_madd_epi16(av, w1));
            }
        }
        for (r, sum) in sums.iter().enumerate() {
            let mut acc = [0i32; PANEL];
            _mm256_storeu_si256(acc.as_mut_ptr() as *mut __m256i, sum[0]);
            _mm256_storeu_si256(acc.as_mut_ptr().add(8) as *mut __m256i, sum[1]);
            target.store_row(r, &acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::pseudo_random;
    use crate::Activation;

    #[test]
    fn int8_linear_is_close_to_f32_and_simd_equals_portable() {
        // Odd sizes: a partial tile, a partial panel, an odd input width.
        for &(rows, in_dim, out_dim) in &[(13usize, 37usize, 21usize), (100, 64, 48), (1, 5, 3)] {
            let x = pseudo_random(rows * in_dim, 1);
            let w = pseudo_random(out_dim * in_dim, 2);
            let q = QuantLinear::with_layout(&w, out_dim, in_dim, Layout::Pairs).unwrap();
            let mut got = vec![0f32; rows * out_dim];
            q.forward(&x, &mut got, None).unwrap();
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

            // The AVX2 tile and the portable one store the same values, with or without an
            // epilogue.
            let bias = pseudo_random(out_dim, 3);
            let gelu = Epilogue::BiasAct {
                bias: &bias,
                act: Activation::Gelu,
            };
            let Weights::Pairs { pairs, packed } = &q.weights else {
                panic!("not the pair layout");
            };
            let stride = 2 * pairs;
            let mut qx = vec![0i16; rows * stride];
            let params = quantize_rows(&mut qx, &x, in_dim, stride, quantize_row);
            let tile = rows.min(TILE_ROWS);
            let cols = out_dim.min(PANEL);
            for epilogue in [None, Some(&gelu)] {
                let mut fast = vec![f32::NAN; tile * out_dim];
                let mut slow = vec![f32::NAN; tile * out_dim];
                for (buf, portable) in [(&mut fast, false), (&mut slow, true)] {
                    let target = TileOut {
                        out: buf.as_mut_ptr(),
                        ldc: out_dim,
                        col0: 0,
                        cols,
                        rows: &params[..tile],
                        sums: &q.sums[..PANEL],
                        scales: &q.scales[..PANEL],
                        epilogue,
                    };
                    let (a, w) = (&qx[..tile * stride], &packed[..pairs * 32]);
                    // SAFETY: `buf` holds the tile's rows x `out_dim`.
                    unsafe {
                        if portable {
                            portable_tile(a, stride, w, *pairs, &target)
                        } else {
                            dot_tile(a, stride, w, *pairs, &target)
                        }
                    }
                }
                assert!(fast
                    .iter()
                    .zip(&slow)
                    .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
                assert!(fast
                    .chunks(out_dim)
                    .all(|r| r[..cols].iter().all(|v| v.is_finite())));
            }
            let mut fused = vec![0f32; rows * out_dim];
            q.forward(&x, &mut fused, Some(&gelu)).unwrap();
            for row in got.chunks_exact_mut(out_dim) {
                gelu.apply(row, 0);
            }
            assert_eq!(fused, got);
        }
    }

    /// The quad layout (on its portable kernel here, and on `vpdpbusd` where the CPU has
    /// AVX512-VNNI) stores exactly what the pair layout stores: the same exact sums.
    #[test]
    fn quad_layout_equals_pair_layout_bit_for_bit() {
        let mut layouts = vec![Layout::Quads { vnni: false }];
        if vnni_available() {
            layouts.push(Layout::Quads { vnni: true });
        } else {
            println!("no AVX512-VNNI here: the quad layout runs on its portable kernel only");
        }
        // Partial tiles (1, 13, 25 rows), partial panels, input widths off a multiple of 4,
        // and more than one task in each direction (200 rows, 300 columns).
        let shapes = [
            (13usize, 37usize, 21usize),
            (1, 5, 3),
            (25, 64, 48),
            (200, 70, 300),
        ];
        for &(rows, in_dim, out_dim) in &shapes {
            let x = pseudo_random(rows * in_dim, 4);
            let w = pseudo_random(out_dim * in_dim, 5);
            let bias = pseudo_random(out_dim, 6);
            let gelu = Epilogue::BiasAct {
                bias: &bias,
                act: Activation::Gelu,
            };
            let pairs = QuantLinear::with_layout(&w, out_dim, in_dim, Layout::Pairs).unwrap();
            for &layout in &layouts {
                let quads = QuantLinear::with_layout(&w, out_dim, in_dim, layout).unwrap();
                assert_eq!(quads.layout(), layout);
                for epilogue in [None, Some(&gelu)] {
                    let mut want = vec![0f32; rows * out_dim];
                    let mut got = vec![f32::NAN; rows * out_dim];
                    pairs.forward(&x, &mut want, epilogue).unwrap();
                    quads.forward(&x, &mut got, epilogue).unwrap();
                    let same = want
                        .iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{layout:?} {rows}x{in_dim}x{out_dim}");
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(QuantLinear::new(&[0.0; 6], 4, 2).is_err());
        for layout in [Layout::Pairs, Layout::Quads { vnni: false }] {
            let q = QuantLinear::with_layout(&[0.0; 6], 3, 2, layout).unwrap();
            assert!(q.forward(&[0.0; 4], &mut [0.0; 5], None).is_err());
            let short_bias = Epilogue::BiasAct {
                bias: &[0.0; 2],
                act: Activation::Relu,
            };
            assert!(q
                .forward(&[0.0; 4], &mut [0.0; 6], Some(&short_bias))
                .is_err());
        }
        if !vnni_available() {
            let vnni = Layout::Quads { vnni: true };
            assert!(QuantLinear::with_layout(&[0.0; 6], 3, 2, vnni).is_err());
        }
    }
}
