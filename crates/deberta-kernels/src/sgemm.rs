//! An f32 GEMM for `x · wᵀ` with the `nn.Linear` weight packed once, on first use, into the
//! layout its micro-kernel reads (the `gemm` crate repacks the weight on every call).
//!
//! - Weights: panels of 24 output columns, each `[in][24]`, zero-padded past `out`.
//!   The packed copy starts on a 64-byte boundary, so no weight load splits a cache line.
//! - Inputs: read in place, 4 rows at a time (the kernel broadcasts one value of each row
//!   per step, so the rows need no packing).
//! - Micro-kernel: a 4x24 tile in 12 accumulators; each step loads 3 weight vectors and
//!   broadcasts 4 inputs, 12 FMAs per 7 loads (6x16, the usual AVX2 shape, needs 6 broadcasts,
//!   and measured 80% of this one here).
//! - Cache blocking: a task owns a block of rows x panels; for each `k` block, one panel's
//!   `[BLOCK_K][24]` slice (24 KiB) stays in L1 while the task's rows stream past it from L2.
//!   Each tile also prefetches its share of the next slice into L2, so that the next slice's
//!   first tile does not wait on memory for the weights.
//! - Epilogue: the last `k` block's store also applies the layer's bias and activation
//!   ([`Epilogue`]) to the tile while it is in L1.
//!
//! Used on x86-64 with AVX2 + FMA and no AVX-512 ([`available`]); elsewhere callers keep the
//! `gemm` crate.

use rayon::prelude::*;

use crate::bf16;
use crate::rows::Epilogue;
use crate::{
    check_epilogue, check_io, check_weight, CpuFeatures, Error, MatRef, Result, SharedMut,
};

/// 8-lane vectors per panel row.
const VECS: usize = 3;
/// Output columns per weight panel.
const PANEL: usize = 8 * VECS;
/// Input rows per micro-tile.
const TILE_ROWS: usize = 4;
/// Reduction length per block (one panel slice: 24 KiB, in L1).
const BLOCK_K: usize = 256;
/// At most this many input rows per task.
const CHUNK_ROWS: usize = 48 * TILE_ROWS;
/// Panels per task.
const CHUNK_PANELS: usize = 4;

/// Whether this CPU runs the packed kernel: x86-64 with AVX2 + FMA. It is the default choice
/// only without AVX-512 ([`CpuFeatures::packed_avx2`]), where 512-bit kernels have twice its
/// peak; on AVX-512 CPUs a measured plan ([`crate::tune`]) may still pick it for a shape.
pub fn available() -> bool {
    CpuFeatures::detect().avx2_fma
}

/// An `nn.Linear` weight `[out, in]` packed into 24-column panels, as f32 or as bf16
/// ([`crate::bf16`]).
pub struct PackedLinear {
    in_dim: usize,
    out_dim: usize,
    packed: Packed,
}

/// `[panels][in][24]` from `start`, the first 64-byte boundary of the allocation.
enum Packed {
    F32 { data: Vec<f32>, start: usize },
    Bf16 { data: Vec<u16>, start: usize },
}

impl PackedLinear {
    /// Packs `w [out_dim, in_dim]` (row-major).
    pub fn new(w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        check_weight("packed f32 linear", w, out_dim, in_dim)?;
        let (data, start) = pack_weight(w, out_dim, in_dim, |v| v);
        Ok(Self {
            in_dim,
            out_dim,
            packed: Packed::F32 { data, start },
        })
    }

    /// Packs `w [out_dim, in_dim]` rounded to bf16. [`Self::forward`] multiplies the input
    /// as given: the bf16 format's callers round it first ([`bf16::round_rows`]).
    pub fn new_bf16(w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        check_weight("packed bf16 linear", w, out_dim, in_dim)?;
        let (data, start) = pack_weight(w, out_dim, in_dim, bf16::to_bf16);
        Ok(Self {
            in_dim,
            out_dim,
            packed: Packed::Bf16 { data, start },
        })
    }

    /// Input width (`in_dim`).
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Whether the panels hold bf16 values.
    pub fn is_bf16(&self) -> bool {
        matches!(self.packed, Packed::Bf16 { .. })
    }

    /// `out[rows, out_dim] = x[rows, in_dim] · wᵀ`, then the `epilogue` (bias, activation),
    /// if any.
    pub fn forward(&self, x: &[f32], out: &mut [f32], epilogue: Option<&Epilogue>) -> Result<()> {
        let what = if self.is_bf16() {
            "packed bf16 linear"
        } else {
            "packed f32 linear"
        };
        let rows = check_io(what, x, out, self.in_dim, self.out_dim)?;
        if !available() {
            return Err(Error::Unsupported {
                kernel: what,
                needs: "AVX2 and FMA",
            });
        }
        check_epilogue(what, epilogue, self.out_dim)?;
        if rows > 0 {
            self.multiply(x, rows, out, epilogue);
        }
        Ok(())
    }

    /// `out[rows, out_dim]`, one task per block of rows x panels.
    fn multiply(&self, x: &[f32], rows: usize, out: &mut [f32], epilogue: Option<&Epilogue>) {
        let panels = self.out_dim.div_ceil(PANEL);
        let row_chunks = rows.div_ceil(CHUNK_ROWS);
        // Even chunks, whole tiles.
        let chunk_rows = rows.div_ceil(row_chunks).div_ceil(TILE_ROWS) * TILE_ROWS;
        let panel_chunks = panels.div_ceil(CHUNK_PANELS);
        let dst = Tile {
            ptr: SharedMut(out.as_mut_ptr()),
            ldc: self.out_dim,
            epilogue,
        };
        let lhs = Rows {
            ptr: x.as_ptr(),
            lda: self.in_dim,
        };
        (0..row_chunks * panel_chunks)
            .into_par_iter()
            .for_each(|task| {
                let (rc, pc) = (task / panel_chunks, task % panel_chunks);
                let block = Block {
                    rows: (rc * chunk_rows).min(rows)..((rc + 1) * chunk_rows).min(rows),
                    panels: pc * CHUNK_PANELS..((pc + 1) * CHUNK_PANELS).min(panels),
                };
                // SAFETY: `forward` checked AVX2 + FMA, that `x` holds `rows x in_dim` and
                // `out` `rows x out_dim`, and that the epilogue fits `out_dim`; this task
                // writes only its own rows x panel columns.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    avx2::block(self.panels(), lhs, &block, &dst)
                };
            });
    }
}

impl PackedLinear {
    fn panels(&self) -> Panels<'_> {
        let data = match &self.packed {
            Packed::F32 { data, start } => PanelData::F32(&data[*start..]),
            Packed::Bf16 { data, start } => PanelData::Bf16(&data[*start..]),
        };
        Panels {
            data,
            k: self.in_dim,
            cols: self.out_dim,
            prefetch: true,
        }
    }
}

/// `w [out_dim, in_dim]` converted by `convert` into `[panels][in][24]`, zero-padded past
/// `out_dim`, starting at the returned offset (the first 64-byte boundary).
fn pack_weight<T: Copy + Default + Send + Sync>(
    w: &[f32],
    out_dim: usize,
    in_dim: usize,
    convert: impl Fn(f32) -> T + Sync,
) -> (Vec<T>, usize) {
    let align = 64 / std::mem::size_of::<T>();
    let size = out_dim.div_ceil(PANEL) * in_dim * PANEL;
    let mut packed = vec![T::default(); size + align];
    let start = packed.as_ptr().align_offset(64).min(align);
    packed[start..start + size]
        .par_chunks_mut(in_dim * PANEL)
        .enumerate()
        .for_each(|(panel, dst)| {
            for c in 0..PANEL.min(out_dim - panel * PANEL) {
                let row = &w[(panel * PANEL + c) * in_dim..][..in_dim];
                for (k, &v) in row.iter().enumerate() {
                    dst[k * PANEL + c] = convert(v);
                }
            }
        });
    (packed, start)
}

/// Packed right-hand panels `[panels][k][24]` holding `cols` columns.
#[derive(Clone, Copy)]
struct Panels<'a> {
    data: PanelData<'a>,
    k: usize,
    cols: usize,
    /// Whether to fetch each next f32 slice ahead ([`avx2::block`]): for weights, which come
    /// from memory; not for the attention operands, packed into L2 just before.
    prefetch: bool,
}

/// The panels' values: f32, or bf16 widened to f32 one `[BLOCK_K][24]` slice at a time.
#[derive(Clone, Copy)]
enum PanelData<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

/// Row-major input rows: row `r` at `ptr + r * lda`.
#[derive(Clone, Copy)]
struct Rows {
    ptr: *const f32,
    lda: usize,
}

// SAFETY: the tasks only read through it.
unsafe impl Send for Rows {}
// SAFETY: as for `Send`: shared only to read.
unsafe impl Sync for Rows {}

/// Where a block's results go: a `[rows, ldc]` buffer, and what to apply as each tile's
/// last `k` block is stored.
struct Tile<'a> {
    ptr: SharedMut,
    ldc: usize,
    epilogue: Option<&'a Epilogue<'a>>,
}

/// Scratch for [`matmul_packed`]'s left operands when their columns are strided, reused
/// across calls.
#[derive(Default)]
pub struct PackScratch {
    lhs: Vec<f32>,
}

/// Packs `rhs [k, n]` (strided) into `dst` as the kernel's `[panels][k][24]` panels, for
/// [`matmul_packed`] (the attention products pack each head's operands once and multiply
/// them block by block).
///
/// # Safety
/// The CPU has AVX2 and FMA, and every `rhs(kk, c)`, `kk < k`, `c < n`, is a live element.
pub unsafe fn pack_rhs(dst: &mut Vec<f32>, (k, n): (usize, usize), rhs: MatRef) {
    if k == 0 || n == 0 {
        dst.clear();
        return;
    }
    dst.resize(n.div_ceil(PANEL) * PANEL * k, 0.0);
    // rhs (kk, col), read as rows of its transpose, into [panels][k][24].
    let rhs_t = MatRef {
        ptr: rhs.ptr,
        rs: rhs.cs,
        cs: rhs.rs,
    };
    // SAFETY: the caller's contract, transposed: every rhs_t(c, kk), c < n, kk < k, is live.
    unsafe { pack_strided(dst, PANEL, n, k, rhs_t) };
}

/// `dst[i, c] = lhs[i, k] · rhs[k, c]` on this thread for `i < m` and the columns `cols` of a
/// right operand of `n` columns that [`pack_rhs`] packed into `panels`. Whole panels are
/// computed, so the columns from `cols`' first panel edge to its last (within `n`) are written
/// too. `dst` addresses column 0. `lhs` is read in place when its rows are contiguous, else
/// copied into `scratch` first.
///
/// # Safety
/// The CPU has AVX2 and FMA; `panels` came from `pack_rhs` with this `k` and `n`; every `lhs`
/// element addressed lies in a live allocation, and the `m` rows of `dst` (row stride `dst_rs`)
/// at those columns are the caller's alone.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_packed(
    (m, k): (usize, usize),
    cols: std::ops::Range<usize>,
    n: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: MatRef,
    panels: &[f32],
    scratch: &mut PackScratch,
) {
    // (A short `panels` would break the contract; computing nothing beats reading past it.)
    if m == 0 || k == 0 || cols.is_empty() || panels.len() < n.div_ceil(PANEL) * PANEL * k {
        return;
    }
    let lhs = if lhs.cs == 1 && lhs.rs >= 0 {
        Rows {
            ptr: lhs.ptr,
            lda: lhs.rs as usize,
        }
    } else {
        scratch.lhs.resize(m * k, 0.0);
        for (i, row) in scratch.lhs.chunks_exact_mut(k).enumerate() {
            for (kk, v) in row.iter_mut().enumerate() {
                // SAFETY: i < m, kk < k: an element the contract says is live.
                *v = unsafe { lhs.at(i, kk) };
            }
        }
        Rows {
            ptr: scratch.lhs.as_ptr(),
            lda: k,
        }
    };
    let panels_ref = Panels {
        data: PanelData::F32(panels),
        k,
        cols: n,
        prefetch: false,
    };
    let block = Block {
        rows: 0..m,
        panels: cols.start / PANEL..cols.end.min(n).div_ceil(PANEL),
    };
    let tile = Tile {
        ptr: SharedMut(dst),
        ldc: dst_rs,
        epilogue: None,
    };
    // SAFETY: the CPU has AVX2 and FMA; `lhs` holds the m rows of k values (in place or
    // copied); `panels` holds whole panels of k (checked above); the m rows of `dst` at the
    // block's panel columns are the caller's alone, and there is no epilogue.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        avx2::block(panels_ref, lhs, &block, &tile)
    };
}

/// `dst [groups][k][group]` with `dst[g][kk][i] = src(g * group + i, kk)` for the `rows` rows
/// of `src`, zeros past them.
///
/// # Safety
/// The CPU has AVX2 and FMA, and every `src(r, kk)`, `r < rows`, `kk < k`, is a live element.
unsafe fn pack_strided(dst: &mut [f32], group: usize, rows: usize, k: usize, src: MatRef) {
    for (g, out) in dst.chunks_exact_mut(group * k).enumerate() {
        if src.rs == 1 && (g + 1) * group <= rows {
            // The group's rows are adjacent at each kk: one contiguous copy per kk.
            for (kk, out_k) in out.chunks_exact_mut(group).enumerate() {
                // SAFETY: rows g*group.. + group <= rows at column kk < k are live elements,
                // adjacent since the row stride is 1.
                let src_k = unsafe {
                    let from = src.ptr.offset((g * group) as isize + kk as isize * src.cs);
                    std::slice::from_raw_parts(from, group)
                };
                out_k.copy_from_slice(src_k);
            }
            continue;
        }
        let mut i = 0;
        #[cfg(target_arch = "x86_64")]
        if src.cs == 1 {
            while i + 4 <= group && g * group + i + 4 <= rows {
                // SAFETY: rows below `rows` start at live elements (the contract).
                let row =
                    |r: usize| unsafe { src.ptr.offset((g * group + i + r) as isize * src.rs) };
                let starts = [row(0), row(1), row(2), row(3)];
                // SAFETY: the CPU has AVX2; the 4 rows (below `rows`) hold k adjacent live
                // values each (column stride 1); `out` holds k groups of `group` from i.
                unsafe { avx2::interleave4(starts, k, out.as_mut_ptr().add(i), group) };
                i += 4;
            }
        }
        for i in i..group {
            let r = g * group + i;
            for kk in 0..k {
                out[kk * group + i] = if r < rows {
                    // SAFETY: r < rows, kk < k: a live element by the contract.
                    unsafe { src.at(r, kk) }
                } else {
                    0.0
                };
            }
        }
    }
}

/// The rows and weight panels one task computes.
struct Block {
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{
        bf16, Block, Epilogue, PanelData, Panels, Rows, Tile, BLOCK_K, PANEL, TILE_ROWS, VECS,
    };

    /// Every tile of one block, `k` block by `k` block (the first writes, the rest add, the
    /// last also applies the epilogue).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` holds every row of the block (`w.k` values each); `dst`
    /// is a `[rows, ldc]` buffer whose block no one else touches, and its epilogue fits
    /// `w.cols`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn block(w: Panels, a: Rows, block: &Block, dst: &Tile) {
        // SAFETY: the CPU has AVX2 and FMA (contract); the panel slices read lie in `w.data`
        // (panels of `w.k` x 24 from `block.panels`); every row pointer is one of the block's rows
        // of `a`, `kc` values from `k0`; each tile's store covers this block's rows x panel
        // columns of `dst`, which no one else touches, and the epilogue fits `w.cols`.
        unsafe {
            let k = w.k;
            let mut widened: Option<Box<Widened>> = None;
            let mut k0 = 0;
            while k0 < k {
                let kc = (k - k0).min(BLOCK_K);
                for panel in block.panels.clone() {
                    let at = (panel * k + k0) * PANEL;
                    let b = match w.data {
                        PanelData::F32(data) => data.as_ptr().add(at),
                        PanelData::Bf16(data) => {
                            let buf = widened
                                .get_or_insert_with(|| Box::new(Widened([0.0; BLOCK_K * PANEL])));
                            let slice = &mut buf.0[..kc * PANEL];
                            for (d, &h) in slice.iter_mut().zip(&data[at..at + kc * PANEL]) {
                                *d = bf16::widen(h);
                            }
                            slice.as_ptr()
                        }
                    };
                    let next = next_slice(w, block, panel, k0);
                    let tiles = block.rows.len().div_ceil(TILE_ROWS);
                    let mut r = block.rows.start;
                    while r < block.rows.end {
                        if let Some((start, bytes)) = next {
                            prefetch_share(start, bytes, (r - block.rows.start) / TILE_ROWS, tiles);
                        }
                        let rows = (block.rows.end - r).min(TILE_ROWS);
                        // A short last tile repeats its last row; only `rows` rows are stored.
                        let row = |i: usize| a.ptr.add((r + i.min(rows - 1)) * a.lda + k0);
                        let acc = micro_kernel([row(0), row(1), row(2), row(3)], b, kc);
                        let store = Store {
                            out: dst.ptr.get().add(r * dst.ldc + panel * PANEL),
                            ldc: dst.ldc,
                            rows,
                            col0: panel * PANEL,
                            cols: (w.cols - panel * PANEL).min(PANEL),
                            add: k0 > 0,
                        };
                        store.write(&acc);
                        if let (Some(epilogue), true) = (dst.epilogue, k0 + kc == k) {
                            store.finish(epilogue);
                        }
                        r += TILE_ROWS;
                    }
                }
                k0 += kc;
            }
        }
    }

    /// The f32 panel slice [`block`] multiplies after `panel`'s at `k0` (the next panel, or
    /// the first one of the next `k` block) as (start, bytes), for [`prefetch_share`]; `None`
    /// for bf16 panels and operands packed just before (`w.prefetch` off).
    fn next_slice(w: Panels, block: &Block, panel: usize, k0: usize) -> Option<(*const u8, usize)> {
        let PanelData::F32(data) = w.data else {
            return None;
        };
        if !w.prefetch {
            return None;
        }
        let (panel, k0) = if panel + 1 < block.panels.end {
            (panel + 1, k0)
        } else {
            (block.panels.start, k0 + BLOCK_K)
        };
        if k0 >= w.k {
            return None;
        }
        let kc = (w.k - k0).min(BLOCK_K);
        let start = data.as_ptr().wrapping_add((panel * w.k + k0) * PANEL);
        Some((start.cast(), kc * PANEL * std::mem::size_of::<f32>()))
    }

    /// Fetches into L2 share `share` of `shares` of the cache lines of the `bytes` bytes at
    /// `start`: [`block`] calls it once per tile with the slice it reads next, so that
    /// slice's lines are in L2 when its first tile starts. (The int8 GEMM measured 0-8%
    /// slower with the same prefetch, so only this one has it.)
    #[inline(always)]
    fn prefetch_share(start: *const u8, bytes: usize, share: usize, shares: usize) {
        let lines = bytes.div_ceil(64);
        let per_share = lines.div_ceil(shares.max(1));
        let from = (share * per_share).min(lines);
        for line in from..(from + per_share).min(lines) {
            // SAFETY: a prefetch never faults; the address is only a hint.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(start.wrapping_add(line * 64).cast()) };
        }
    }

    /// One widened `[BLOCK_K][24]` panel slice, cache-line aligned (24 KiB: on the heap, once
    /// per block, not on a worker's stack).
    #[repr(align(64))]
    struct Widened([f32; BLOCK_K * PANEL]);

    /// Interleaves 4 rows of `k` values: `dst[kk * stride + i] = rows[i][kk]` (8 `k` at a time
    /// by a 4x8 in-register transpose).
    ///
    /// # Safety
    /// AVX2; each row holds `k` values and `dst` `(k - 1) * stride + 4`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn interleave4(rows: [*const f32; 4], k: usize, dst: *mut f32, stride: usize) {
        // SAFETY: the CPU has AVX2 (contract); the loads read `rows[i][kk..kk + 8]` with
        // kk + 8 <= k, the stores `dst[(kk + j) * stride..+ 4]` within `(k - 1) * stride + 4`.
        unsafe {
            let mut kk = 0;
            while kk + 8 <= k {
                let r: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(rows[i].add(kk)));
                // [r0 r1 r0 r1 | ...] pairs, then [r0 r1 r2 r3] quads: lane 0 holds k, lane 1 k + 4.
                let lo01 = _mm256_unpacklo_ps(r[0], r[1]);
                let hi01 = _mm256_unpackhi_ps(r[0], r[1]);
                let lo23 = _mm256_unpacklo_ps(r[2], r[3]);
                let hi23 = _mm256_unpackhi_ps(r[2], r[3]);
                let quads = [
                    _mm256_shuffle_ps::<0x44>(lo01, lo23),
                    _mm256_shuffle_ps::<0xEE>(lo01, lo23),
                    _mm256_shuffle_ps::<0x44>(hi01, hi23),
                    _mm256_shuffle_ps::<0xEE>(hi01, hi23),
                ];
                for (j, q) in quads.iter().enumerate() {
                    _mm_storeu_ps(dst.add((kk + j) * stride), _mm256_castps256_ps128(*q));
                    _mm_storeu_ps(
                        dst.add((kk + 4 + j) * stride),
                        _mm256_extractf128_ps::<1>(*q),
                    );
                }
                kk += 8;
            }
            for kk in kk..k {
                for (i, row) in rows.iter().enumerate() {
                    *dst.add(kk * stride + i) = *row.add(kk);
                }
            }
        }
    }

    /// `acc[i][h] = Σ_k a[i][k] · b[k][8h..8h + 8]` for 4 input rows `a[i]` (`kc` values each)
    /// and a packed `b [kc][24]`: 12 accumulators, 3 weight vectors and 1 broadcast, all 16 ymm
    /// registers (written in assembly because LLVM spills one accumulator here, which costs a
    /// third of the speed).
    ///
    /// # Safety
    /// AVX2 + FMA; each `a[i]` holds `kc` values and `b` `24 * kc`, `kc >= 1`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn micro_kernel(
        a: [*const f32; TILE_ROWS],
        b: *const f32,
        kc: usize,
    ) -> [[__m256; VECS]; TILE_ROWS] {
        // SAFETY: the CPU has AVX2 and FMA (contract); the loop reads `kc` values of each row
        // and `24 * kc` of `b` (kc >= 1), touches only the named registers and no stack.
        unsafe {
            let z = _mm256_setzero_ps();
            let (mut c00, mut c01, mut c02, mut c10, mut c11, mut c12) = (z, z, z, z, z, z);
            let (mut c20, mut c21, mut c22, mut c30, mut c31, mut c32) = (z, z, z, z, z, z);
            std::arch::asm!(
                "2:",
                "vmovups ymm12, [{b}]",
                "vmovups ymm13, [{b} + 32]",
                "vmovups ymm14, [{b} + 64]",
                "vbroadcastss ymm15, dword ptr [{a0} + {off}]",
                "vfmadd231ps ymm0, ymm15, ymm12",
                "vfmadd231ps ymm1, ymm15, ymm13",
                "vfmadd231ps ymm2, ymm15, ymm14",
                "vbroadcastss ymm15, dword ptr [{a1} + {off}]",
                "vfmadd231ps ymm3, ymm15, ymm12",
                "vfmadd231ps ymm4, ymm15, ymm13",
                "vfmadd231ps ymm5, ymm15, ymm14",
                "vbroadcastss ymm15, dword ptr [{a2} + {off}]",
                "vfmadd231ps ymm6, ymm15, ymm12",
                "vfmadd231ps ymm7, ymm15, ymm13",
                "vfmadd231ps ymm8, ymm15, ymm14",
                "vbroadcastss ymm15, dword ptr [{a3} + {off}]",
                "vfmadd231ps ymm9, ymm15, ymm12",
                "vfmadd231ps ymm10, ymm15, ymm13",
                "vfmadd231ps ymm11, ymm15, ymm14",
                "add {off}, 4",
                "add {b}, 96",
                "dec {k}",
                "jnz 2b",
                a0 = in(reg) a[0],
                a1 = in(reg) a[1],
                a2 = in(reg) a[2],
                a3 = in(reg) a[3],
                off = inout(reg) 0usize => _,
                b = inout(reg) b => _,
                k = inout(reg) kc => _,
                inout("ymm0") c00, inout("ymm1") c01, inout("ymm2") c02,
                inout("ymm3") c10, inout("ymm4") c11, inout("ymm5") c12,
                inout("ymm6") c20, inout("ymm7") c21, inout("ymm8") c22,
                inout("ymm9") c30, inout("ymm10") c31, inout("ymm11") c32,
                out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(nostack, readonly),
            );
            [
                [c00, c01, c02],
                [c10, c11, c12],
                [c20, c21, c22],
                [c30, c31, c32],
            ]
        }
    }

    /// Where one tile's results go: `rows x cols` valid values at `out` (row stride `ldc`),
    /// written, or added to what the previous `k` blocks left.
    struct Store {
        out: *mut f32,
        ldc: usize,
        rows: usize,
        /// The first output column of the tile.
        col0: usize,
        cols: usize,
        add: bool,
    }

    impl Store {
        /// # Safety
        /// AVX2, and the `rows x cols` values at `out` are valid and this task's alone.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn write(&self, acc: &[[__m256; VECS]; TILE_ROWS]) {
            // SAFETY: the CPU has AVX2 (contract); row i < rows, columns below `cols` (all 24 on
            // the full-panel path) are valid and this task's.
            unsafe {
                for (i, acc_row) in acc.iter().enumerate().take(self.rows) {
                    let out = self.out.add(i * self.ldc);
                    if self.cols == PANEL {
                        for (h, v) in acc_row.iter().enumerate() {
                            let o = out.add(8 * h);
                            let v = if self.add {
                                _mm256_add_ps(_mm256_loadu_ps(o), *v)
                            } else {
                                *v
                            };
                            _mm256_storeu_ps(o, v);
                        }
                    } else {
                        let mut tmp = [0f32; PANEL];
                        for (h, v) in acc_row.iter().enumerate() {
                            _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * h), *v);
                        }
                        for (c, v) in tmp.iter().enumerate().take(self.cols) {
                            let o = out.add(c);
                            *o = if self.add { *o + v } else { *v };
                        }
                    }
                }
            }
        }

        /// Applies the epilogue to the stored tile.
        ///
        /// # Safety
        /// As for [`Store::write`], and the epilogue fits the output's columns.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn finish(&self, epilogue: &Epilogue) {
            // SAFETY: row i < rows holds `cols` valid values that are this task's (contract).
            unsafe {
                for i in 0..self.rows {
                    let seg = std::slice::from_raw_parts_mut(self.out.add(i * self.ldc), self.cols);
                    epilogue.apply(seg, self.col0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Act;
    use crate::test_util::{max_diff, pseudo_random, strided};

    fn reference(x: &[f32], w: &[f32], k: usize) -> Vec<f32> {
        x.chunks_exact(k)
            .flat_map(|xr| {
                w.chunks_exact(k).map(move |wr| {
                    xr.iter()
                        .zip(wr)
                        .map(|(a, b)| f64::from(a * b))
                        .sum::<f64>() as f32
                })
            })
            .collect()
    }

    #[test]
    fn odd_shapes_match_a_plain_dot_product() {
        if !available() {
            return;
        }
        for &(rows, cols, k) in &[
            (1, 1, 1),
            (5, 7, 13),
            (130, 101, 800),
            (9, 200, 1600),
            (4, 24, 8),
            (1700, 30, 40),
        ] {
            let x = pseudo_random(rows * k, 1);
            let w = pseudo_random(cols * k, 2);
            let mut out = vec![f32::NAN; rows * cols];
            PackedLinear::new(&w, cols, k)
                .unwrap()
                .forward(&x, &mut out, None)
                .unwrap();
            let want = reference(&x, &w, k);
            let diff = max_diff(&out, &want);
            println!("{rows}x{cols}x{k}: max |diff| {diff:.2e}");
            assert!(diff < 1e-4 * (k as f32).sqrt(), "{rows}x{cols}x{k}: {diff}");
        }
    }

    #[test]
    fn bf16_panels_equal_f32_panels_of_the_rounded_values() {
        if !available() {
            return;
        }
        // Two whole panels and a partial one, three k blocks, a short last row tile.
        let (rows, cols, k) = (7, 50, 600);
        let x = pseudo_random(rows * k, 11);
        let w = pseudo_random(cols * k, 12);
        let bias = pseudo_random(cols, 13);
        let epilogue = Epilogue::BiasAct {
            bias: &bias,
            act: Act::GeluErf,
        };
        let round = |v: &[f32]| v.iter().map(|&a| bf16::round(a)).collect::<Vec<f32>>();
        let f32_of_rounded = PackedLinear::new(&round(&w), cols, k).unwrap();
        let packed_bf16 = PackedLinear::new_bf16(&w, cols, k).unwrap();
        for epilogue in [None, Some(&epilogue)] {
            let mut want = vec![0f32; rows * cols];
            f32_of_rounded
                .forward(&round(&x), &mut want, epilogue)
                .unwrap();
            let mut got = vec![f32::NAN; rows * cols];
            let mut rounded = Vec::new();
            let x_rounded = bf16::round_rows(&x, k, &mut rounded);
            packed_bf16.forward(x_rounded, &mut got, epilogue).unwrap();
            assert_eq!(got, want);
            // Rounding moves the products by ~2^-8 relative: visible, and small.
            let exact = reference(&x, &w, k);
            let diff = max_diff(&got, &exact);
            if epilogue.is_none() {
                println!("bf16 vs f32 products: max |diff| {diff:.2e}");
                assert!(diff > 1e-5 && diff < 0.05, "{diff}");
            }
        }
    }

    #[test]
    fn epilogue_matches_a_separate_pass() {
        if !available() {
            return;
        }
        // 50 columns: two whole panels and a partial one; k = 600: three k blocks.
        let (rows, cols, k) = (7, 50, 600);
        let x = pseudo_random(rows * k, 5);
        let w = PackedLinear::new(&pseudo_random(cols * k, 6), cols, k).unwrap();
        let bias = pseudo_random(cols, 7);
        let epilogues = [
            Epilogue::BiasAct {
                bias: &bias,
                act: Act::GeluErf,
            },
            Epilogue::BiasScale {
                bias: &bias,
                scaled: 20..37,
                factor: 0.125,
            },
        ];
        for epilogue in &epilogues {
            let mut want = vec![0f32; rows * cols];
            w.forward(&x, &mut want, None).unwrap();
            for row in want.chunks_exact_mut(cols) {
                epilogue.apply(row, 0);
            }
            let mut got = vec![f32::NAN; rows * cols];
            w.forward(&x, &mut got, Some(epilogue)).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn strided_matmul_matches_a_plain_product() {
        if !available() {
            return;
        }
        let mut scratch = PackScratch::default();
        for &(m, n, k) in &[(1, 1, 1), (7, 30, 5), (128, 128, 64), (33, 64, 300)] {
            // lhs [m, k] inside rows of stride k + 3 (and the same read column-major, which
            // is copied first); rhs given as its transpose [n, k].
            let lhs = pseudo_random(m * (k + 3), 3);
            let rhs_t = pseudo_random(n * k, 4);
            let compact: Vec<f32> = lhs
                .chunks_exact(k + 3)
                .flat_map(|r| r[..k].to_vec())
                .collect();
            let want = reference(&compact, &rhs_t, k);
            // The same lhs stored column-major: [k, m].
            let column_major: Vec<f32> = (0..k)
                .flat_map(|kk| (0..m).map(move |i| (i, kk)))
                .map(|(i, kk)| compact[i * k + kk])
                .collect();
            let row_major = strided(&lhs, k + 3, 1);
            let col_major = strided(&column_major, 1, m);
            let b = strided(&rhs_t, 1, k);
            for a in [row_major, col_major] {
                let mut out = vec![f32::NAN; m * (n + 2)];
                // SAFETY: the shapes and strides stay inside the buffers.
                unsafe {
                    let mut panels = Vec::new();
                    pack_rhs(&mut panels, (k, n), b);
                    let dst = out.as_mut_ptr();
                    matmul_packed((m, k), 0..n, n, dst, n + 2, a, &panels, &mut scratch);
                }
                let diff = out
                    .chunks_exact(n + 2)
                    .flat_map(|r| &r[..n])
                    .zip(&want)
                    .fold(0f32, |d, (a, b)| d.max((a - b).abs()));
                println!(
                    "{m}x{n}x{k} lhs column stride {}: max |diff| {diff:.2e}",
                    a.cs
                );
                assert!(diff < 1e-4 * (k as f32).sqrt(), "{m}x{n}x{k}: {diff}");
                assert!(out
                    .chunks_exact(n + 2)
                    .all(|r| r[n..].iter().all(|v| v.is_nan())));
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(PackedLinear::new(&[0.0; 5], 2, 3).is_err());
        assert!(PackedLinear::new(&[0.0; 6], 2, 0).is_err());
        let w = PackedLinear::new(&[0.0; 6], 2, 3).unwrap();
        if !available() {
            assert!(w.forward(&[0.0; 3], &mut [0.0; 2], None).is_err());
            return;
        }
        w.forward(&[0.0; 3], &mut [0.0; 2], None).unwrap();
        w.forward(&[], &mut [], None).unwrap();
        assert!(w.forward(&[0.0; 4], &mut [0.0; 2], None).is_err());
        assert!(w.forward(&[0.0; 3], &mut [0.0; 3], None).is_err());
        let short_bias = Epilogue::BiasAct {
            bias: &[0.0; 3],
            act: Act::GeluErf,
        };
        let wide_scale = Epilogue::BiasScale {
            bias: &[0.0; 2],
            scaled: 1..3,
            factor: 2.0,
        };
        for bad in [short_bias, wide_scale] {
            assert!(w.forward(&[0.0; 3], &mut [0.0; 2], Some(&bad)).is_err());
        }
    }
}
