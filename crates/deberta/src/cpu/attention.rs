//! Disentangled self-attention on flat buffers: one task per (head, sequence). A task packs
//! `Kᵀ`, `V` and the position tables once, computes the p2c position scores of every key, then
//! walks the queries in blocks: the block's `Q·Kᵀ` and c2p scores over the active slots, one
//! fused gather + mask + softmax pass, and `P·V` written straight into the context rows. A
//! block's scores stay in L2 however long the sequence (at L = 512 one head's whole `[L, L]`
//! scores, c2p and p2c blocks are 3 MiB).
//!
//! Mirrors `DisentangledSelfAttention.forward` / `disentangled_attention_bias`:
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L199>

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::sgemm::{self, PackScratch};
use super::{gemm, rows, simd_fn, MatRef, SharedMut};
use crate::{Error, Result};

/// Sizes of one attention call.
#[derive(Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub head_size: usize,
}

/// The relative-position inputs, shared by all layers except the projected tables.
pub struct Relative<'a> {
    /// c2p: position keys already divided by the scale, `[heads, 2S, d]`.
    pub key: Option<&'a [f32]>,
    /// p2c: position queries, `[heads, 2S, d]`.
    pub query: Option<&'a [f32]>,
    /// Rows per head in the tables (`2S`).
    pub table_rows: usize,
    /// `[2L - 1]` slots by diagonal: score `(i, j)` reads c2p `[i, c2p_slot[i - j + L - 1]]`
    /// and p2c `[j, p2c_slot[i - j + L - 1]]` of the `[L, W]` blocks (see `RelativeIndex`).
    pub c2p_slot: &'a [u32],
    pub p2c_slot: &'a [u32],
    pub first_slot: usize,
    pub width: usize,
}

/// Query rows and key columns per tile of the fused score pass (and rows per slot window of
/// the position products).
const QUERY_BLOCK: usize = 32;
const KEY_BLOCK: usize = 64;
/// f32 values a query block's scores and c2p rows may take together (192 KiB, under half
/// of a Zen 3 core's L2: one block of 128 rows at L = 128, blocks of 32 rows at L = 512).
const BLOCK_VALUES: usize = 48 * 1024;

thread_local! {
    /// Each worker's scratch, kept across calls (fresh multi-MiB buffers per call would cost
    /// page faults on every layer).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Per-task scratch, reused across the tasks a worker runs.
#[derive(Default)]
struct Scratch {
    /// One query block's scores `[rows, L]`, then its probabilities.
    scores: Vec<f32>,
    /// One query block's c2p scores `[rows, W]`.
    c2p: Vec<f32>,
    /// Every key's p2c scores `[L, W]`.
    p2c: Vec<f32>,
    /// `Kᵀ` and `V`, packed once per task (when the AVX2 kernel runs the products).
    keys: Vec<f32>,
    values: Vec<f32>,
    /// One head's active position table, packed once per task.
    table: Vec<f32>,
    /// Left operands the products copy (column-strided ones).
    pack: PackScratch,
}

impl Scratch {
    /// Sizes the buffers for one (head, sequence) task; every product overwrites what it uses.
    fn fit(&mut self, block_rows: usize, len: usize, width: usize) {
        self.scores.resize(block_rows * len, 0.0);
        self.c2p.resize(block_rows * width + PAD, 0.0);
        self.p2c.resize(len * width + PAD, 0.0);
    }
}

/// Query rows per block: a multiple of [`QUERY_BLOCK`] whose scores and c2p rows fit
/// [`BLOCK_VALUES`] (at least one [`QUERY_BLOCK`]).
fn block_rows(len: usize, width: usize) -> usize {
    let fit = BLOCK_VALUES / (len + width).max(1);
    (fit / QUERY_BLOCK).max(1) * QUERY_BLOCK
}

/// The right operand `[k, n]` of the products a task repeats for each query block: packed
/// once for the AVX2 kernel, or read in place by the `gemm` crate.
#[derive(Clone, Copy)]
enum Rhs<'a> {
    Packed {
        panels: &'a [f32],
        k: usize,
        n: usize,
    },
    InPlace {
        m: MatRef,
        k: usize,
    },
}

impl<'a> Rhs<'a> {
    /// Packs `m [k, n]` into `buf` when `packed` (the AVX2 kernel runs the products).
    ///
    /// # Safety
    /// Every `m(kk, c)`, `kk < k`, `c < n`, is a live element for as long as the result is
    /// used, and `packed` implies [`sgemm::available`].
    unsafe fn new(buf: &'a mut Vec<f32>, (k, n): (usize, usize), m: MatRef, packed: bool) -> Self {
        if packed {
            sgemm::pack_rhs(buf, (k, n), m);
            Rhs::Packed { panels: buf, k, n }
        } else {
            Rhs::InPlace { m, k }
        }
    }

    /// `dst[i, c] = lhs[i, k] · self[k, c]` for `i < rows` and `c` in `cols` (`dst` addresses
    /// column 0). The packed kernel computes whole 24-column panels, so columns from `cols`'
    /// first panel edge to its last (within `n`) may be written too.
    ///
    /// # Safety
    /// `lhs` addresses `rows x k` live elements, and the `rows` rows of `dst` (row stride
    /// `dst_rs`) over those columns are the caller's alone.
    unsafe fn multiply(
        self,
        rows: usize,
        cols: Range<usize>,
        dst: *mut f32,
        dst_rs: usize,
        lhs: MatRef,
        pack: &mut PackScratch,
    ) {
        match self {
            Rhs::Packed { panels, k, n } => {
                sgemm::matmul_packed((rows, k), cols, n, dst, dst_rs, lhs, panels, pack)
            }
            Rhs::InPlace { m, k } => {
                let rhs = MatRef {
                    ptr: m.ptr.offset(cols.start as isize * m.cs),
                    ..m
                };
                let shape = (rows, cols.len(), k);
                gemm::matmul(shape, dst.add(cols.start), dst_rs as isize, lhs, rhs, false)
            }
        }
    }
}

/// Row `r` onwards of `m`.
///
/// # Safety
/// Row `r` lies in `m`'s allocation.
unsafe fn from_row(m: MatRef, r: usize) -> MatRef {
    MatRef {
        ptr: m.ptr.offset(r as isize * m.rs),
        ..m
    }
}

/// `qkv`: `[B*L, 3*H*d]` with biases added and K divided by the scale; `bias`: `[B, L, L]`
/// additive mask, and `masked[b]` whether block `b` of it has any non-zero entry (all-zero
/// blocks are not read). Writes `context [B*L, H*d]` and, when given, `probs [B, H, L, L]`.
pub fn attention(
    dims: Dims,
    qkv: &[f32],
    bias: &[f32],
    masked: &[bool],
    relative: Option<&Relative>,
    context: &mut [f32],
    probs: Option<&mut [f32]>,
) -> Result<()> {
    let packed = sgemm::available();
    attention_on(dims, qkv, bias, masked, relative, context, probs, packed)
}

/// [`attention`] with the products on the AVX2 kernel (`packed`, which needs
/// [`sgemm::available`]) or on the `gemm` crate.
#[allow(clippy::too_many_arguments)]
fn attention_on(
    dims: Dims,
    qkv: &[f32],
    bias: &[f32],
    masked: &[bool],
    relative: Option<&Relative>,
    context: &mut [f32],
    probs: Option<&mut [f32]>,
    packed: bool,
) -> Result<()> {
    let Dims {
        batch,
        len,
        heads,
        head_size,
    } = dims;
    let all = heads * head_size;
    let width = relative.map_or(0, |r| r.width);
    check(dims, qkv, bias, relative, context.len(), probs.as_deref())?;
    if masked.len() != batch {
        return Err(Error::Input(format!(
            "CPU fast path: {} mask flags for a batch of {batch}",
            masked.len()
        )));
    }
    let ctx_out = SharedMut(context.as_mut_ptr());
    let probs_out = probs.map(|p| SharedMut(p.as_mut_ptr()));
    let row_stride = 3 * all;
    let block = block_rows(len, width).min(len);
    let tiles = relative.is_some_and(|r| {
        r.key.is_some()
            && r.query.is_some()
            && unit_steps(r.c2p_slot)
            && unit_steps(r.p2c_slot)
            && super::avx2_fma()
    });
    let head_task = |scratch: &mut Scratch, task: usize| {
        scratch.fit(block, len, width);
        let (h, b) = (task / batch, task % batch);
        // Q, K, V of head h, sequence b: [L, d] views with row stride 3*H*d.
        let base = b * len * row_stride + h * head_size;
        let q = MatRef {
            ptr: qkv[base..].as_ptr(),
            rs: row_stride as isize,
            cs: 1,
        };
        let k = MatRef {
            ptr: qkv[base + all..].as_ptr(),
            ..q
        };
        let v = MatRef {
            ptr: qkv[base + 2 * all..].as_ptr(),
            ..q
        };
        let kt = MatRef {
            ptr: k.ptr,
            rs: 1,
            cs: row_stride as isize,
        };
        let Scratch {
            scores,
            c2p,
            p2c,
            keys,
            values,
            table,
            pack,
        } = scratch;
        // SAFETY: `check` verified every buffer against these shapes; scratch is private.
        let (keys, values) = unsafe {
            (
                Rhs::new(keys, (head_size, len), kt, packed),
                Rhs::new(values, (len, head_size), v, packed),
            )
        };
        let bias_b = masked[b].then(|| &bias[b * len * len..(b + 1) * len * len]);
        if let Some((rel, t)) = relative.and_then(|r| Some((r, r.query?))) {
            let rhs = position_table(rel, t, h, head_size, table, packed);
            position_term(rel, rhs, k, 0..len, len, true, p2c, pack);
        }
        let c2p_table = relative
            .and_then(|r| Some((r, r.key?)))
            .map(|(rel, t)| (rel, position_table(rel, t, h, head_size, table, packed)));
        for i0 in (0..len).step_by(block) {
            let rows = block.min(len - i0);
            // SAFETY: rows i0..i0 + rows of the [L, d] views; the block's buffers are private.
            unsafe {
                keys.multiply(
                    rows,
                    0..len,
                    scores.as_mut_ptr(),
                    len,
                    from_row(q, i0),
                    pack,
                );
                if let Some((rel, rhs)) = c2p_table {
                    let queries = i0..i0 + rows;
                    position_term(rel, rhs, q, queries, len, false, c2p, pack);
                }
            }
            let block_scores = &mut scores[..rows * len];
            let terms = relative.map(|r| Terms {
                c2p: r.key.map(|_| &c2p[..]),
                p2c: r.query.map(|_| &p2c[..]),
                c_slots: r.c2p_slot,
                p_slots: r.p2c_slot,
                width,
                tiles,
            });
            fused_softmax(block_scores, terms, bias_b, i0, len);
            if let Some(out) = probs_out {
                // SAFETY: rows i0.. of block (b, h) of probs are written by this task only.
                let dst = unsafe {
                    let at = (b * heads + h) * len * len + i0 * len;
                    std::slice::from_raw_parts_mut(out.get().add(at), rows * len)
                };
                dst.copy_from_slice(block_scores);
            }
            let p = MatRef {
                ptr: scores.as_ptr(),
                rs: len as isize,
                cs: 1,
            };
            // SAFETY: rows b*L + i0.. of context, columns h*d..(h+1)*d belong to this task.
            unsafe {
                let dst = ctx_out.get().add((b * len + i0) * all + h * head_size);
                values.multiply(rows, 0..head_size, dst, all, p, pack)
            };
        }
    };
    (0..heads * batch).into_par_iter().for_each(|task| {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => head_task(&mut scratch, task),
            Err(_) => head_task(&mut Scratch::default(), task),
        })
    });
    Ok(())
}

/// Head `h`'s active position rows of `table` as the right operand `[d, W]` of a position
/// product: element `(e, s)` = `table[h, first + s, e]`.
fn position_table<'a>(
    rel: &Relative,
    table: &'a [f32],
    h: usize,
    d: usize,
    buf: &'a mut Vec<f32>,
    packed: bool,
) -> Rhs<'a> {
    let active = MatRef {
        ptr: table[(h * rel.table_rows + rel.first_slot) * d..].as_ptr(),
        rs: 1,
        cs: d as isize,
    };
    // SAFETY: `check` verified that the W active rows of d values lie in the table; the
    // caller's `packed` implies the AVX2 kernel.
    unsafe { Rhs::new(buf, (d, rel.width), active, packed) }
}

/// One position term for the content rows `rows`: c2p (`Q · Kr_activeᵀ`, query rows) or p2c
/// (`K · Qr_activeᵀ`, key rows, `keys`), into `out [rows.len(), W]`. Each block of
/// [`QUERY_BLOCK`] rows gets only the slots the score pass reads for it: c2p row `i` reads
/// diagonals `i..i + L`, p2c row `j` diagonals `L - 1 - j..2L - 1 - j`, so a block's slots
/// span about `L + 32` diagonals of the `2L - 1`, which skips ~25-40% of the columns.
#[allow(clippy::too_many_arguments)]
fn position_term(
    rel: &Relative,
    table: Rhs,
    content: MatRef,
    rows: Range<usize>,
    len: usize,
    keys: bool,
    out: &mut [f32],
    pack: &mut PackScratch,
) {
    let w = rel.width;
    let slots = if keys { rel.p2c_slot } else { rel.c2p_slot };
    for r0 in rows.clone().step_by(QUERY_BLOCK) {
        let r1 = (r0 + QUERY_BLOCK).min(rows.end);
        let diagonals = if keys {
            len - r1..2 * len - 1 - r0
        } else {
            r0..r1 + len - 1
        };
        let Some((lo, hi)) = slot_window(&slots[diagonals]) else {
            continue;
        };
        // SAFETY: `check` verified the shapes (every slot is below W, so columns lo..=hi of
        // the block's rows lie in `out`, which holds rows.len() x W); r0 < L.
        unsafe {
            let dst = out.as_mut_ptr().add((r0 - rows.start) * w);
            table.multiply(r1 - r0, lo..hi + 1, dst, w, from_row(content, r0), pack);
        }
    }
}

/// The smallest and largest slot in `slots` (`None` when empty).
fn slot_window(slots: &[u32]) -> Option<(usize, usize)> {
    let lo = *slots.iter().min()? as usize;
    let hi = *slots.iter().max()? as usize;
    Some((lo, hi))
}

/// The position terms the score pass adds to one query block's `Q·Kᵀ`.
#[derive(Clone, Copy)]
struct Terms<'a> {
    /// c2p rows of the block's queries `[rows, W]`, and p2c rows of every key `[L, W]`, each
    /// followed by at least [`PAD`] values (the tile kernel's loads run up to 7 past a row).
    c2p: Option<&'a [f32]>,
    p2c: Option<&'a [f32]>,
    /// Slots by diagonal `i - j + L - 1` (`2L - 1` each, every one below `width`).
    c_slots: &'a [u32],
    p_slots: &'a [u32],
    width: usize,
    /// Whether [`relative_tile8`] may add whole 8 x 8 tiles: AVX2, both terms on, and slots
    /// that rise by 0 or 1 from one diagonal to the next ([`unit_steps`]).
    tiles: bool,
}

/// Values after each position buffer that [`relative_tile8`]'s 8-wide loads may touch.
const PAD: usize = 8;

/// Whether `slots` never falls and rises by at most 1 per diagonal: then any 8 consecutive
/// diagonals read 8 consecutive slots from the smallest of them. Bucketed and plain
/// relative positions both do; the tile kernel is used only where this was checked.
fn unit_steps(slots: &[u32]) -> bool {
    slots.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 1)
}

simd_fn! {
/// `scores[i, j] = softmax_j(qk[i, j] + (c2p[i, δ] + p2c[j, δ']) + bias[i, j])`, in place, for
/// the query rows `i0..` that `scores` (`[rows, L]`) holds; `bias` is the whole `[L, L]`
/// block (`None`: all zeros), `terms` `None` without relative attention.
fn fused_softmax(
    scores: &mut [f32],
    terms: Option<Terms>,
    bias: Option<&[f32]>,
    i0: usize,
    len: usize,
) {
    let rows = scores.len() / len.max(1);
    // Tiles of QUERY_BLOCK x KEY_BLOCK: the p2c reads walk a diagonal across p2c rows, so a
    // tile keeps the rows and slots it touches in L1; each query block is then normalised
    // while its rows are still in cache.
    for t0 in (0..rows).step_by(QUERY_BLOCK) {
        let t1 = (t0 + QUERY_BLOCK).min(rows);
        for j0 in (0..len).step_by(KEY_BLOCK) {
            let j1 = (j0 + KEY_BLOCK).min(len);
            let (t_end, j_end) = relative_tiles(scores, terms, i0, t0..t1, j0..j1, len);
            for t in t0..t1 {
                // Row t of the block is query i; score (i, j) is at t * L + j.
                let i = i0 + t;
                let from = if t < t_end { j_end } else { j0 };
                if let Some(terms) = terms {
                    add_relative(&mut scores[t * len..(t + 1) * len], terms, i, t, from..j1, len);
                }
                // (qk + relative) + mask, the candle path's order.
                if let Some(bias) = bias {
                    let row = &mut scores[t * len + j0..t * len + j1];
                    for (s, m) in row.iter_mut().zip(&bias[i * len + j0..i * len + j1]) {
                        *s += m;
                    }
                }
            }
        }
        for row in scores[t0 * len..t1 * len].chunks_exact_mut(len) {
            rows::softmax(row);
        }
    }
}
}

/// Adds the position terms to the whole 8 x 8 tiles of block rows `rows` and keys `keys`
/// through [`relative_tile8`] where `terms.tiles` allows; returns where the tiles end
/// (`rows.start..t_end` x `keys.start..j_end` are done).
fn relative_tiles(
    scores: &mut [f32],
    terms: Option<Terms>,
    i0: usize,
    rows: Range<usize>,
    keys: Range<usize>,
    len: usize,
) -> (usize, usize) {
    let Some(terms) = terms.filter(|t| t.tiles) else {
        return (rows.start, keys.start);
    };
    let t_end = rows.start + rows.len() / 8 * 8;
    let j_end = keys.start + keys.len() / 8 * 8;
    #[cfg(target_arch = "x86_64")]
    for t in (rows.start..t_end).step_by(8) {
        for j in (keys.start..j_end).step_by(8) {
            // SAFETY: `tiles` implies AVX2, both terms and unit slot steps; the 8 x 8 tile at
            // block row t (query i0 + t) and key j lies in the block, and the buffers carry
            // PAD values past their rows.
            unsafe { relative_tile8(scores, terms, i0 + t, t, j, len) };
        }
    }
    (t_end, j_end)
}

/// `row[j] += c2p[t, δ] + p2c[j, δ']` for the keys `keys` of query `i` (row `t` of the block),
/// one element at a time.
#[inline(always)]
fn add_relative(row: &mut [f32], terms: Terms, i: usize, t: usize, keys: Range<usize>, len: usize) {
    let Terms {
        c_slots,
        p_slots,
        width,
        ..
    } = terms;
    // Diagonal d = i - j + L - 1 (so d falls as j rises).
    let top = i + len - 1;
    let (row, j0) = (&mut row[keys.clone()], keys.start);
    match (terms.c2p, terms.p2c) {
        (Some(c2p), Some(p2c)) => {
            let c2p_row = &c2p[t * width..(t + 1) * width];
            for (jj, s) in row.iter_mut().enumerate() {
                let j = j0 + jj;
                // SAFETY: `check` verified both slot tables hold 2L - 1 entries, each below W;
                // top - j < 2L - 1 and j < L, and p2c holds L rows of W.
                *s += unsafe {
                    let d = top - j;
                    c2p_row.get_unchecked(*c_slots.get_unchecked(d) as usize)
                        + p2c.get_unchecked(j * width + *p_slots.get_unchecked(d) as usize)
                };
            }
        }
        (Some(c2p), None) => {
            let c2p_row = &c2p[t * width..(t + 1) * width];
            for (jj, s) in row.iter_mut().enumerate() {
                // SAFETY: as above.
                *s += unsafe {
                    c2p_row.get_unchecked(*c_slots.get_unchecked(top - j0 - jj) as usize)
                };
            }
        }
        (None, Some(p2c)) => {
            for (jj, s) in row.iter_mut().enumerate() {
                let j = j0 + jj;
                // SAFETY: as above.
                *s += unsafe {
                    p2c.get_unchecked(j * width + *p_slots.get_unchecked(top - j) as usize)
                };
            }
        }
        (None, None) => {}
    }
}

/// Adds `c2p[t + a, δ] + p2c[j + b, δ']` to the 8 x 8 tile of scores at block row `t` (query
/// `i`), key `j`, for `a, b < 8`, as [`add_relative`] does, in vectors.
///
/// With unit slot steps, the 8 diagonals a row or key of the tile reads cover 8 consecutive
/// slots from the smallest: c2p row `t + a` is one 8-wide load permuted by its slots
/// (reversed: the diagonal falls as the key rises); p2c row `j + b` likewise gives the
/// values for the tile's 8 queries, and an 8 x 8 transpose turns those columns into rows.
///
/// # Safety
/// AVX2; `terms.tiles` holds; rows `t..t + 8` lie in the block and keys `j..j + 8` below `len`;
/// the c2p and p2c buffers hold their rows plus [`PAD`] values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn relative_tile8(
    scores: &mut [f32],
    terms: Terms,
    i: usize,
    t: usize,
    j: usize,
    len: usize,
) {
    use std::arch::x86_64::*;
    let (Some(c2p), Some(p2c)) = (terms.c2p, terms.p2c) else {
        return;
    };
    let (c_slots, p_slots, w) = (terms.c_slots.as_ptr(), terms.p_slots.as_ptr(), terms.width);
    // Diagonal of score (i + a, j + b): d0 + a - b, with d0 >= 7 and d0 + 7 <= 2L - 2.
    let d0 = i + len - 1 - j;
    let reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    // p2c: lane a of column b is p2c[j + b, p_slots[d0 + a - b]].
    let mut cols = [_mm256_setzero_ps(); 8];
    for (b, col) in cols.iter_mut().enumerate() {
        let slots = _mm256_loadu_si256(p_slots.add(d0 - b).cast());
        let first = *p_slots.add(d0 - b);
        let idx = _mm256_sub_epi32(slots, _mm256_set1_epi32(first as i32));
        let at = p2c.as_ptr().add((j + b) * w + first as usize);
        *col = _mm256_permutevar8x32_ps(_mm256_loadu_ps(at), idx);
    }
    let p_rows = transpose8(cols);
    for (a, p_row) in p_rows.iter().enumerate() {
        // c2p: lane b of row a is c2p[t + a, c_slots[d0 + a - b]], slots loaded rising from
        // d0 + a - 7 and reversed.
        let low = d0 + a - 7;
        let slots =
            _mm256_permutevar8x32_epi32(_mm256_loadu_si256(c_slots.add(low).cast()), reverse);
        let first = *c_slots.add(low);
        let idx = _mm256_sub_epi32(slots, _mm256_set1_epi32(first as i32));
        let at = c2p.as_ptr().add((t + a) * w + first as usize);
        let c_row = _mm256_permutevar8x32_ps(_mm256_loadu_ps(at), idx);
        let out = scores.as_mut_ptr().add((t + a) * len + j);
        _mm256_storeu_ps(
            out,
            _mm256_add_ps(_mm256_loadu_ps(out), _mm256_add_ps(c_row, *p_row)),
        );
    }
}

/// The transpose of 8 rows of 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// Every length the unsafe code relies on, checked once per call.
fn check(
    dims: Dims,
    qkv: &[f32],
    bias: &[f32],
    relative: Option<&Relative>,
    context_len: usize,
    probs: Option<&[f32]>,
) -> Result<()> {
    let Dims {
        batch,
        len,
        heads,
        head_size,
    } = dims;
    let tokens = batch * len;
    let all = heads * head_size;
    let mut ok = qkv.len() == tokens * 3 * all
        && bias.len() == batch * len * len
        && context_len == tokens * all
        && probs.is_none_or(|p| p.len() == batch * heads * len * len);
    if let Some(rel) = relative {
        let table = heads * rel.table_rows * head_size;
        let diagonals = (2 * len).saturating_sub(1);
        ok &= rel.key.is_none_or(|t| t.len() == table)
            && rel.query.is_none_or(|t| t.len() == table)
            && rel.first_slot + rel.width <= rel.table_rows
            && rel.c2p_slot.len() == diagonals
            && rel.p2c_slot.len() == diagonals
            && rel
                .c2p_slot
                .iter()
                .chain(rel.p2c_slot)
                .all(|&s| (s as usize) < rel.width);
    }
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "CPU fast path: attention buffers do not match B={batch} L={len} H={heads} d={head_size}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{max_diff, pseudo_random};
    use crate::relative_position::RelativeSlots;

    /// The attention of one (sequence, head) computed element by element in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        dims: Dims,
        qkv: &[f32],
        bias: &[f32],
        rel: Option<&Relative>,
        b: usize,
        h: usize,
        context: &mut [f32],
        probs: &mut [f32],
    ) {
        let Dims {
            len,
            heads,
            head_size: d,
            ..
        } = dims;
        let all = heads * d;
        let at =
            |t: usize, part: usize, e: usize| qkv[(b * len + t) * 3 * all + part * all + h * d + e];
        let table_at = |t: &[f32], slot: u32, e: usize, r: &Relative| {
            t[(h * r.table_rows + r.first_slot + slot as usize) * d + e]
        };
        let dot = |f: &dyn Fn(usize) -> f64| (0..d).map(f).sum::<f64>();
        for i in 0..len {
            let mut row: Vec<f64> = (0..len)
                .map(|j| {
                    let mut s = dot(&|e| at(i, 0, e) as f64 * at(j, 1, e) as f64);
                    if let Some(r) = rel {
                        let slot = i + len - 1 - j;
                        if let Some(t) = r.key {
                            let c = r.c2p_slot[slot];
                            s += dot(&|e| at(i, 0, e) as f64 * table_at(t, c, e, r) as f64);
                        }
                        if let Some(t) = r.query {
                            let p = r.p2c_slot[slot];
                            s += dot(&|e| at(j, 1, e) as f64 * table_at(t, p, e, r) as f64);
                        }
                    }
                    s + bias[(b * len + i) * len + j] as f64
                })
                .collect();
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row
                .iter_mut()
                .map(|v| {
                    *v = (*v - max).exp();
                    *v
                })
                .sum();
            for (j, v) in row.iter_mut().enumerate() {
                *v /= sum;
                probs[((b * heads + h) * len + i) * len + j] = *v as f32;
            }
            for e in 0..d {
                let c: f64 = (0..len).map(|j| row[j] * at(j, 2, e) as f64).sum();
                context[(b * len + i) * all + h * d + e] = c as f32;
            }
        }
    }

    /// Several query blocks (the last a partial one, shorter than a score tile and than the
    /// 8 x 8 position tiles, as is the last key tile), a padded
    /// sequence, bucketed positions, each position term on and off, on both product paths,
    /// against an element-by-element reference, probabilities included.
    #[test]
    fn query_blocks_match_an_elementwise_reference() {
        let dims = Dims {
            batch: 2,
            len: 262,
            heads: 2,
            head_size: 8,
        };
        let (len, all) = (dims.len, dims.heads * dims.head_size);
        let index = RelativeSlots::new(len, 32, 32, 128);
        let block = block_rows(len, index.width);
        assert!(block < len && len % block < QUERY_BLOCK, "block {block}");
        // Bucketed slots rise by 0 or 1 per diagonal, so the 8 x 8 tile kernel runs.
        assert!(unit_steps(&index.c2p_slot) && unit_steps(&index.p2c_slot));
        let table_rows = 64;
        let key_table = pseudo_random(dims.heads * table_rows * dims.head_size, 1);
        let query_table = pseudo_random(dims.heads * table_rows * dims.head_size, 2);
        let qkv = pseudo_random(dims.batch * len * 3 * all, 3);
        // Sequence 1 is padded: its last 37 keys are masked.
        let mut bias = vec![0f32; dims.batch * len * len];
        for row in bias[len * len..].chunks_exact_mut(len) {
            row[len - 37..].fill(f32::MIN);
        }
        let masked = [false, true];
        let terms = [(true, true), (true, false), (false, true), (false, false)];
        let paths = [false, sgemm::available()];
        for ((c2p, p2c), packed) in terms.into_iter().flat_map(|t| paths.map(|p| (t, p))) {
            let rel = Relative {
                key: c2p.then_some(&key_table[..]),
                query: p2c.then_some(&query_table[..]),
                table_rows,
                c2p_slot: &index.c2p_slot,
                p2c_slot: &index.p2c_slot,
                first_slot: index.first_slot,
                width: index.width,
            };
            let rel = (c2p || p2c).then_some(&rel);
            let mut context = vec![f32::NAN; dims.batch * len * all];
            let mut probs = vec![f32::NAN; dims.batch * dims.heads * len * len];
            attention_on(
                dims,
                &qkv,
                &bias,
                &masked,
                rel,
                &mut context,
                Some(&mut probs),
                packed,
            )
            .unwrap();
            let mut want_context = vec![0f32; context.len()];
            let mut want_probs = vec![0f32; probs.len()];
            for (b, h) in (0..dims.batch).flat_map(|b| (0..dims.heads).map(move |h| (b, h))) {
                reference(
                    dims,
                    &qkv,
                    &bias,
                    rel,
                    b,
                    h,
                    &mut want_context,
                    &mut want_probs,
                );
            }
            let (dc, dp) = (
                max_diff(&context, &want_context),
                max_diff(&probs, &want_probs),
            );
            println!("c2p {c2p} p2c {p2c} packed {packed}: context {dc:.2e}, probs {dp:.2e}");
            assert!(dc < 1e-6 && dp < 1e-6, "context {dc}, probs {dp}");
            assert!(probs[len * len * 2..]
                .chunks_exact(len)
                .all(|r| r[len - 37..] == [0.0; 37]));
        }
    }
}
