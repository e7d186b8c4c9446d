//! Int8 attention products (`--dtype int8`): `Q·Kᵀ`, the c2p / p2c position terms and `P·V`
//! on the int8 kernels of the linear layers ([`crate::int8`]), with the same quantisation:
//!
//! - the right operand `[k, n]` per output column, symmetric and pair-bounded as a linear
//!   layer's weight rows (in f32 arithmetic: `int8::quantize_column`) (`Kᵀ`: per key; `V`: per head-dimension column over the keys; the
//!   position tables: per slot);
//! - the left operand per row, asymmetric u8 with the row's range holding 0 (`Q`, `K`, and the
//!   probabilities, whose zero point is then 0);
//! - exact i32 sums on whichever kernel the plan picked (`vpdpbusd`, `vpmaddubsw` or portable:
//!   the same bits), the zero point removed through each column's sum, scaled back to f32.
//!
//! `benchmarks/int8_attention_sim.py` measured this quantisation in transformers before it was
//! built: with all four products in int8, max |Δ logits| on random v3-base stays under ONNX
//! Runtime's int8 model's.

use std::ops::Range;

use rayon::prelude::*;

use crate::avx512::{Tile, COLS as PANEL, MAX_ROWS as TILE_ROWS};
use crate::int8::{as_bytes_mut, quantize_column, quantize_row, sum_tile, Kernel, RowParams};
use crate::{simd_fn, MatRef};

/// Columns gathered at a time when the right operand's rows are contiguous (its columns
/// strided): one cache line of each row serves 16 columns.
const GATHER_COLUMNS: usize = 16;

/// A right operand `[k, n]` quantised per column and packed as the int8 kernels read weights:
/// `[panels][quads][32]` groups of 4 i8, zero-padded. Its buffers are kept across
/// [`Self::pack`] calls.
#[derive(Default)]
pub struct QuantRhs {
    k: usize,
    n: usize,
    quads: usize,
    packed: Vec<u32>,
    /// Per column (whole panels; padding columns 1).
    scales: Vec<f32>,
    /// `Σ_k q[k, c]` per column (padding columns 0).
    sums: Vec<i32>,
    /// The columns as rows `[n][k]` when they are strided, then one column's quantised values.
    columns: Vec<f32>,
    q: Vec<i8>,
}

impl QuantRhs {
    /// Quantises and packs `rhs [k, n]` (strided).
    ///
    /// # Safety
    /// Every `rhs(kk, c)`, `kk < k`, `c < n`, is a live element.
    pub unsafe fn pack(&mut self, (k, n): (usize, usize), rhs: MatRef) {
        let quads = k.div_ceil(4);
        let padded = n.div_ceil(PANEL) * PANEL;
        (self.k, self.n, self.quads) = (k, n, quads);
        self.packed.clear();
        self.packed.resize(padded * quads, 0);
        self.scales.clear();
        self.scales.resize(padded, 1.0);
        self.sums.clear();
        self.sums.resize(padded, 0);
        if k == 0 || n == 0 {
            return;
        }
        self.q.clear();
        self.q.resize(quads * 4, 0);
        if rhs.rs != 1 {
            // SAFETY: the caller's contract.
            unsafe { gather_columns(&mut self.columns, (k, n), rhs) };
        }
        for c in 0..n {
            let column = if rhs.rs == 1 {
                // SAFETY: column c's k values are live (contract) and adjacent (row stride 1).
                unsafe { std::slice::from_raw_parts(rhs.ptr.offset(c as isize * rhs.cs), k) }
            } else {
                &self.columns[c * k..(c + 1) * k]
            };
            self.scales[c] = quantize_column(column, &mut self.q[..k]);
            self.sums[c] = self.q[..k].iter().map(|&v| i32::from(v)).sum();
            let (panel, col) = (c / PANEL, c % PANEL);
            for (g, quad) in self.q.chunks_exact(4).enumerate() {
                let bytes = [quad[0] as u8, quad[1] as u8, quad[2] as u8, quad[3] as u8];
                self.packed[(panel * quads + g) * PANEL + col] = u32::from_le_bytes(bytes);
            }
        }
    }

    /// Columns `n`.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// Rows `k` (the length of each column's sum).
    pub fn depth(&self) -> usize {
        self.k
    }
}

/// A layer's relative-position tables quantised once, per head, as the right operands of the
/// c2p and p2c products (`[d, 2S]`: one column per slot), so that the (head, sequence) tasks
/// do not quantise them again.
pub struct QuantTables {
    key: Vec<QuantRhs>,
    query: Vec<QuantRhs>,
}

impl QuantTables {
    /// Quantises the position keys (c2p) and queries (p2c), each `[heads, rows, d]` when
    /// given, head by head in parallel.
    pub fn new(
        key: Option<&[f32]>,
        query: Option<&[f32]>,
        (heads, rows, d): (usize, usize, usize),
    ) -> crate::Result<Self> {
        let quantise = |table: Option<&[f32]>| -> crate::Result<Vec<QuantRhs>> {
            let Some(table) = table else {
                return Ok(Vec::new());
            };
            if table.len() != heads * rows * d {
                return Err(crate::Error::shape(
                    "int8 position tables",
                    format!("{} values for H={heads} rows={rows} d={d}", table.len()),
                ));
            }
            Ok((0..heads)
                .into_par_iter()
                .map(|h| {
                    let mut q = QuantRhs::default();
                    let head = MatRef {
                        ptr: table[h * rows * d..].as_ptr(),
                        rs: 1,
                        cs: d as isize,
                    };
                    // SAFETY: head h's rows x d values lie in the table (checked above).
                    unsafe { q.pack((d, rows), head) };
                    q
                })
                .collect())
        };
        Ok(Self {
            key: quantise(key)?,
            query: quantise(query)?,
        })
    }

    /// Head `h`'s c2p (`key`) or p2c table, when quantised.
    pub fn head(&self, h: usize, key: bool) -> Option<&QuantRhs> {
        if key {
            self.key.get(h)
        } else {
            self.query.get(h)
        }
    }
}

/// `dst [n][k]` with `dst[c][kk] = rhs(kk, c)`, `GATHER_COLUMNS` columns at a time.
///
/// # Safety
/// Every `rhs(kk, c)`, `kk < k`, `c < n`, is a live element.
unsafe fn gather_columns(dst: &mut Vec<f32>, (k, n): (usize, usize), rhs: MatRef) {
    dst.clear();
    dst.resize(n * k, 0.0);
    for c0 in (0..n).step_by(GATHER_COLUMNS) {
        let c1 = (c0 + GATHER_COLUMNS).min(n);
        for kk in 0..k {
            for c in c0..c1 {
                // SAFETY: kk < k, c < n: a live element (contract).
                dst[c * k + kk] = unsafe { rhs.at(kk, c) };
            }
        }
    }
}

/// The left operand's rows quantised to u8 (`[m][quads]` groups of 4) with their scales and
/// zero points, kept across calls.
#[derive(Default)]
pub struct QuantLhs {
    q: Vec<u32>,
    params: Vec<RowParams>,
    row: Vec<f32>,
}

impl QuantLhs {
    /// Quantises the `m` rows of `k` values of `lhs`, each to `quads` groups.
    ///
    /// # Safety
    /// Every `lhs(i, kk)`, `i < m`, `kk < k`, is a live element.
    unsafe fn quantize(&mut self, (m, k): (usize, usize), quads: usize, lhs: MatRef) {
        self.q.clear();
        self.q.resize(m * quads, 0);
        self.params.clear();
        let bytes = as_bytes_mut(&mut self.q);
        for (i, q_row) in bytes.chunks_exact_mut(quads * 4).enumerate() {
            let x_row = if lhs.cs == 1 {
                // SAFETY: row i's k values are live (contract) and adjacent (column stride 1).
                unsafe { std::slice::from_raw_parts(lhs.ptr.offset(i as isize * lhs.rs), k) }
            } else {
                self.row.clear();
                // SAFETY: i < m, kk < k: live elements (contract).
                self.row.extend((0..k).map(|kk| unsafe { lhs.at(i, kk) }));
                &self.row
            };
            self.params.push(quantize_row(&mut q_row[..k], x_row));
        }
    }
}

/// `dst[i, c - cols.start] = lhs[i, :] · rhs[:, c]` for `i < m` and the columns `cols` of
/// `rhs` (only those are written), through int8 on `kernel`. `dst` addresses column
/// `cols.start` of row 0, rows `dst_rs` apart.
///
/// # Safety
/// The CPU has `kernel`'s instructions; every `lhs(i, kk)`, `i < m`, `kk < rhs`'s `k`, is a
/// live element; `cols` lies within `rhs`'s columns; the `m` rows of `dst` at those columns are
/// the caller's alone.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    kernel: Kernel,
    m: usize,
    cols: Range<usize>,
    dst: *mut f32,
    dst_rs: usize,
    lhs: MatRef,
    rhs: &QuantRhs,
    scratch: &mut QuantLhs,
) {
    let (k, quads) = (rhs.k, rhs.quads);
    if m == 0 || k == 0 || cols.is_empty() || cols.end > rhs.n {
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { scratch.quantize((m, k), quads, lhs) };
    for panel in cols.start / PANEL..cols.end.div_ceil(PANEL) {
        let col0 = panel * PANEL;
        let wanted = cols.start.max(col0) - col0..cols.end.min(col0 + PANEL) - col0;
        for r0 in (0..m).step_by(TILE_ROWS) {
            let rows = (m - r0).min(TILE_ROWS);
            let tile = Tile {
                a: scratch.q[r0 * quads..].as_ptr(),
                lda: quads,
                rows,
                b: rhs.packed[panel * quads * PANEL..].as_ptr(),
                groups: quads,
            };
            let mut acc = [[0i32; PANEL]; TILE_ROWS];
            // SAFETY: `q` holds the tile's rows of `quads` groups and `packed` the panel's
            // `quads x 32`; the CPU has the kernel's instructions (contract); the columns are
            // pair-bounded (`quantize_column`), as the AVX2 kernel's exactness needs.
            unsafe { sum_tile(&tile, &mut acc, kernel) };
            let out = Dequantise {
                rows: &scratch.params[r0..r0 + rows],
                scales: &rhs.scales[col0..col0 + PANEL],
                sums: &rhs.sums[col0..col0 + PANEL],
                wanted: wanted.clone(),
            };
            // SAFETY: rows r0.. of `dst` at columns col0 + wanted - cols.start (inside `cols`)
            // are the caller's alone (contract).
            unsafe {
                let at = dst.add(r0 * dst_rs + col0 + wanted.start - cols.start);
                store_tile(&out, &acc, at, dst_rs)
            };
        }
    }
}

/// How one tile's sums become f32: its rows' quantisation, its panel's column scales and sums,
/// and which of the panel's 32 columns are stored.
struct Dequantise<'a> {
    rows: &'a [RowParams],
    scales: &'a [f32],
    sums: &'a [i32],
    wanted: Range<usize>,
}

simd_fn! {
/// Stores `(acc - zero · Σq) · s_row · s_col` for the tile's rows and the wanted columns, at
/// `out` (the first wanted column of row 0, rows `ldc` apart).
///
/// # Safety
/// Those rows x columns at `out` are valid and the caller's alone.
unsafe fn store_tile(d: &Dequantise, acc: &[[i32; PANEL]; TILE_ROWS], out: *mut f32, ldc: usize) {
    let w = d.wanted.clone();
    for (r, (p, acc_row)) in d.rows.iter().zip(acc).enumerate() {
        // SAFETY: row r's wanted columns are valid and the caller's (contract).
        let seg = unsafe { std::slice::from_raw_parts_mut(out.add(r * ldc), w.len()) };
        for (((o, &a), &sum), &s) in seg
            .iter_mut()
            .zip(&acc_row[w.clone()])
            .zip(&d.sums[w.clone()])
            .zip(&d.scales[w.clone()])
        {
            // Wrapping, as the kernels' sums: the true value fits i32 (u8 x pair-bounded i8
            // over k values, k far below `int8`'s widest input).
            *o = a.wrapping_sub(p.zero.wrapping_mul(sum)) as f32 * p.scale * s;
        }
    }
}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pseudo_random, strided};

    /// `lhs · rhs` in f64 from the values each side's quantisation represents, for comparing
    /// with the kernels (which sum those exactly and round once per output).
    fn product_of_quantised(lhs: &[f32], rhs_t: &[f32], k: usize) -> Vec<f64> {
        let dequantise_row = |row: &[f32]| {
            let mut q = vec![0u8; k];
            let p = quantize_row(&mut q, row);
            q.iter()
                .map(|&v| (f64::from(v) - f64::from(p.zero)) * f64::from(p.scale))
                .collect::<Vec<f64>>()
        };
        let dequantise_column = |col: &[f32]| {
            let mut q = vec![0i8; k];
            let s = quantize_column(col, &mut q);
            q.iter()
                .map(|&v| f64::from(v) * f64::from(s))
                .collect::<Vec<f64>>()
        };
        let columns: Vec<Vec<f64>> = rhs_t.chunks_exact(k).map(dequantise_column).collect();
        lhs.chunks_exact(k)
            .flat_map(|row| {
                let x = dequantise_row(row);
                columns
                    .iter()
                    .map(move |c| x.iter().zip(c).map(|(a, b)| a * b).sum::<f64>())
                    .collect::<Vec<f64>>()
            })
            .collect()
    }

    fn kernels_here() -> Vec<Kernel> {
        [Kernel::Vnni, Kernel::Avx2, Kernel::Portable]
            .into_iter()
            .filter(|k| k.runs_here())
            .collect()
    }

    /// Every kernel gives the quantised operands' exact product (rounded to f32 once, then
    /// scaled: within a few ulps), for column-contiguous and row-contiguous right operands, a
    /// column window across panel edges, and odd sizes; columns outside the window are not
    /// written.
    #[test]
    fn products_are_the_quantised_operands_exact_product_on_every_kernel() {
        for (m, n, k, window) in [
            (1, 1, 1, 0..1),
            (13, 70, 64, 0..70),
            (32, 255, 64, 17..200),
            (40, 64, 130, 3..64),
            (12, 33, 7, 31..33),
        ] {
            let lhs = pseudo_random(m * k, 1);
            // Probabilities-like rows too: non-negative, so the zero point is 0.
            let probs: Vec<f32> = lhs.iter().map(|v| v.abs()).collect();
            let rhs_t = pseudo_random(n * k, 2);
            let rhs_rows: Vec<f32> = (0..k)
                .flat_map(|kk| (0..n).map(move |c| (kk, c)))
                .map(|(kk, c)| rhs_t[c * k + kk])
                .collect();
            let column_major = strided(&rhs_t, 1, k);
            let row_major = strided(&rhs_rows, n, 1);
            for left in [&lhs, &probs] {
                let want = product_of_quantised(left, &rhs_t, k);
                let a = strided(left, k, 1);
                let mut first: Option<Vec<f32>> = None;
                for kernel in kernels_here() {
                    for b in [column_major, row_major] {
                        let (mut rhs, mut scratch) = (QuantRhs::default(), QuantLhs::default());
                        let mut out = vec![f32::NAN; m * (n + 1)];
                        // SAFETY: the shapes and strides stay inside the buffers; `kernel`
                        // runs here.
                        unsafe {
                            rhs.pack((k, n), b);
                            let dst = out.as_mut_ptr().add(window.start);
                            let w = window.clone();
                            matmul(kernel, m, w, dst, n + 1, a, &rhs, &mut scratch);
                        }
                        let mut worst = 0f64;
                        for (i, row) in out.chunks_exact(n + 1).enumerate() {
                            for (c, &v) in row.iter().enumerate() {
                                if !window.contains(&c) {
                                    assert!(v.is_nan(), "column {c} outside {window:?} written");
                                    continue;
                                }
                                let exact = want[i * n + c];
                                worst =
                                    worst.max((f64::from(v) - exact).abs() / exact.abs().max(1e-3));
                            }
                        }
                        println!("{m}x{n}x{k} {window:?} on {kernel:?}: max rel. diff {worst:.2e}");
                        assert!(worst < 1e-5, "{kernel:?}: {worst}");
                        match &first {
                            None => first = Some(out),
                            Some(f) => assert!(
                                f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{kernel:?}: not bit for bit the first kernel's"
                            ),
                        }
                    }
                }
            }
        }
    }

    /// Int8 products stay near the f32 product (the quantisation error only).
    #[test]
    fn products_are_close_to_f32() {
        let (m, n, k) = (32, 96, 64);
        let lhs = pseudo_random(m * k, 5);
        let rhs_t = pseudo_random(n * k, 6);
        let kernel = kernels_here()[0];
        let (mut rhs, mut scratch) = (QuantRhs::default(), QuantLhs::default());
        let mut out = vec![0f32; m * n];
        // SAFETY: the shapes and strides stay inside the buffers; `kernel` runs here.
        unsafe {
            let (a, b) = (strided(&lhs, k, 1), strided(&rhs_t, 1, k));
            rhs.pack((k, n), b);
            matmul(kernel, m, 0..n, out.as_mut_ptr(), n, a, &rhs, &mut scratch);
        }
        let mut worst = 0f32;
        for (i, row) in lhs.chunks_exact(k).enumerate() {
            for (c, col) in rhs_t.chunks_exact(k).enumerate() {
                let exact: f32 = row.iter().zip(col).map(|(a, b)| a * b).sum();
                worst = worst.max((out[i * n + c] - exact).abs());
            }
        }
        println!("int8 vs f32 product, k = {k}: max |diff| {worst:.2e}");
        assert!(worst > 1e-5 && worst < 0.05, "{worst}");
    }
}
