//! Disentangled self-attention on flat buffers: one task per (head, sequence). A task packs
//! `Kᵀ`, `V` and the position tables once, computes the p2c position scores of every key, then
//! walks the queries in blocks: the block's `Q·Kᵀ` and c2p scores over the active slots, one
//! fused gather + mask + softmax pass, and `P·V` written straight into the context rows. A
//! block's scores stay in L2 however long the sequence (at L = 512 one head's whole `[L, L]`
//! scores, c2p and p2c blocks are 3 MiB). The products run on the packed AVX2 GEMM, the `gemm`
//! crate, or, for int8 models that ask for it, on int8 operands ([`crate::int8_products`]).
//!
//! Mirrors `DisentangledSelfAttention.forward` / `disentangled_attention_bias`:
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L199>

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use crate::features::avx2_fma;
use crate::int8::Kernel;
use crate::int8_products::{self, QuantLhs, QuantRhs, QuantTables};
use crate::sgemm::{self, PackScratch};
use crate::{gemm, rows, simd_fn, AttentionProducts, Error, MatRef, Result, SharedMut};

/// Sizes of one attention call.
#[derive(Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub head_size: usize,
}

/// The relative-position inputs, shared by all layers except the projected tables.
#[derive(Clone, Copy)]
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
    /// The tables quantised once (int8 products; `None`: each task quantises its window).
    pub quantised: Option<&'a QuantTables>,
}

/// Query rows and key columns per tile of the fused score pass (and rows per slot window of
/// the position products).
pub const QUERY_BLOCK: usize = 32;
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
    /// `Kᵀ`, `V` and the position table quantised (int8 products).
    keys_q: QuantRhs,
    values_q: QuantRhs,
    table_q: QuantRhs,
    /// Left operands the products copy or quantise.
    pack: LhsScratch,
}

/// What the products do to their left operands, kept across calls: the f32 kernel copies
/// column-strided ones, the int8 kernels quantise every one.
#[derive(Default)]
struct LhsScratch {
    f32: PackScratch,
    int8: QuantLhs,
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
/// `BLOCK_VALUES` (at least one [`QUERY_BLOCK`]).
pub fn block_rows(len: usize, width: usize) -> usize {
    let fit = BLOCK_VALUES / (len + width).max(1);
    (fit / QUERY_BLOCK).max(1) * QUERY_BLOCK
}

/// The right operand `[k, n]` of the products a task repeats for each query block: packed
/// once for the AVX2 kernel, read in place by the `gemm` crate, or quantised once for an int8
/// kernel.
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
    /// Columns `offset..` of `rhs` (a whole quantised position table: the active slots).
    Quant {
        rhs: &'a QuantRhs,
        kernel: Kernel,
        offset: usize,
    },
}

impl<'a> Rhs<'a> {
    /// Packs `m [k, n]` into `buf` (packed AVX2 products) or `quant` (int8 products).
    ///
    /// # Safety
    /// Every `m(kk, c)`, `kk < k`, `c < n`, is a live element for as long as the result is
    /// used, and the CPU has the instructions of `products`' kernel ([`check_products`]).
    unsafe fn new(
        (buf, quant): (&'a mut Vec<f32>, &'a mut QuantRhs),
        (k, n): (usize, usize),
        m: MatRef,
        products: AttentionProducts,
    ) -> Self {
        match products {
            AttentionProducts::PackedAvx2 => {
                // SAFETY: the caller's contract: AVX2 + FMA, and `m [k, n]` live.
                unsafe { sgemm::pack_rhs(buf, (k, n), m) };
                Rhs::Packed { panels: buf, k, n }
            }
            AttentionProducts::GemmCrate => Rhs::InPlace { m, k },
            AttentionProducts::Int8(kernel) => {
                // SAFETY: the caller's contract: `m [k, n]` live.
                unsafe { quant.pack((k, n), m) };
                Rhs::Quant {
                    rhs: quant,
                    kernel,
                    offset: 0,
                }
            }
        }
    }

    /// `dst[i, c] = lhs[i, k] · self[k, c]` for `i < rows` and `c` in `cols` (`dst` addresses
    /// column 0). The packed kernel computes whole 24-column panels, so columns from `cols`'
    /// first panel edge to its last (within `n`) may be written too (the int8 kernels write
    /// `cols` only).
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
        pack: &mut LhsScratch,
    ) {
        // SAFETY: packed panels and quantised operands exist only where `new` was told the CPU
        // has their kernel's instructions, and were packed with this `k` and `n`; in-place
        // operands are live for `k x n` (`new`'s contract), so column `cols.start` is too; the
        // rest is the caller's contract.
        unsafe {
            match self {
                Rhs::Packed { panels, k, n } => {
                    let scratch = &mut pack.f32;
                    sgemm::matmul_packed((rows, k), cols, n, dst, dst_rs, lhs, panels, scratch)
                }
                Rhs::Quant {
                    rhs,
                    kernel,
                    offset,
                } => {
                    let at = dst.add(cols.start);
                    let cols = cols.start + offset..cols.end + offset;
                    int8_products::matmul(kernel, rows, cols, at, dst_rs, lhs, rhs, &mut pack.int8)
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
}

/// Row `r` onwards of `m`.
///
/// # Safety
/// Row `r` lies in `m`'s allocation.
unsafe fn from_row(m: MatRef, r: usize) -> MatRef {
    MatRef {
        // SAFETY: the caller's contract.
        ptr: unsafe { m.ptr.offset(r as isize * m.rs) },
        ..m
    }
}

/// One attention call's inputs.
pub struct Attention<'a> {
    pub dims: Dims,
    /// `[B*L, 3*H*d]`: Q, K, V with their biases added and K divided by the scale.
    pub qkv: &'a [f32],
    /// `[B, L, L]` additive mask.
    pub mask: &'a [f32],
    /// Per sequence, whether its `[L, L]` block of `mask` has any non-zero entry (all-zero
    /// blocks are not read).
    pub masked: &'a [bool],
    /// The relative-position terms, when relative attention is on.
    pub relative: Option<Relative<'a>>,
}

/// Disentangled self-attention: writes `context [B*L, H*d]` and, when given, the
/// probabilities `probs [B, H, L, L]`, with the products on `products` (an error for
/// [`AttentionProducts::PackedAvx2`] where this CPU lacks AVX2 and FMA).
pub fn attention(
    a: &Attention,
    products: AttentionProducts,
    context: &mut [f32],
    probs: Option<&mut [f32]>,
) -> Result<()> {
    check(a, context.len(), probs.as_deref())?;
    check_products(products)?;
    let tasks = HeadTasks::new(a, products, context, probs);
    let Dims { batch, heads, .. } = a.dims;
    (0..heads * batch).into_par_iter().for_each(|task| {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => tasks.run(&mut scratch, task),
            Err(_) => tasks.run(&mut Scratch::default(), task),
        })
    });
    Ok(())
}

/// One sequence of an unpadded batch: its length and, when relative attention is on, its
/// position terms (slot tables for its own length).
#[derive(Clone, Copy)]
pub struct UnpaddedSequence<'a> {
    pub len: usize,
    pub relative: Option<Relative<'a>>,
}

/// Disentangled self-attention over sequences of different lengths concatenated row by row,
/// each at its own length (no padding, no mask): `qkv [T, 3*H*d]` -> `context [T, H*d]`,
/// `T` = the sum of the lengths, sequence `s` in rows `len_0 + ... + len_{s-1}` onwards. One
/// task per (sequence, head), longest sequences first, on the same kernels as [`attention`].
pub fn attention_unpadded(
    sequences: &[UnpaddedSequence],
    (heads, head_size): (usize, usize),
    qkv: &[f32],
    products: AttentionProducts,
    context: &mut [f32],
) -> Result<()> {
    let all = heads * head_size;
    let tokens: usize = sequences.iter().map(|s| s.len).sum();
    if qkv.len() != tokens * 3 * all || context.len() != tokens * all {
        return Err(Error::shape(
            "unpadded attention",
            format!(
                "buffers of {} / {} values for {tokens} tokens, H={heads} d={head_size}",
                qkv.len(),
                context.len()
            ),
        ));
    }
    let mut calls = Vec::with_capacity(sequences.len());
    let mut row = 0;
    for s in sequences {
        calls.push(Attention {
            dims: Dims {
                batch: 1,
                len: s.len,
                heads,
                head_size,
            },
            qkv: &qkv[row * 3 * all..(row + s.len) * 3 * all],
            mask: &[],
            masked: &[false],
            relative: s.relative,
        });
        row += s.len;
    }
    check_products(products)?;
    let mut tasks = Vec::with_capacity(calls.len());
    let mut rest = context;
    for a in &calls {
        let (mine, tail) = std::mem::take(&mut rest).split_at_mut(a.dims.len * all);
        check(a, mine.len(), None)?;
        tasks.push(HeadTasks::new(a, products, mine, None));
        rest = tail;
    }
    let mut jobs: Vec<(usize, usize)> = (0..calls.len())
        .flat_map(|s| (0..heads).map(move |h| (s, h)))
        .collect();
    jobs.sort_by_key(|&(s, _)| std::cmp::Reverse(calls[s].dims.len));
    jobs.into_par_iter().for_each(|(s, h)| {
        // Batch 1: task `h` is head `h` of the sequence.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => tasks[s].run(&mut scratch, h),
            Err(_) => tasks[s].run(&mut Scratch::default(), h),
        })
    });
    Ok(())
}

/// An error where this CPU lacks the instructions of the products' kernel.
fn check_products(products: AttentionProducts) -> Result<()> {
    match products {
        AttentionProducts::PackedAvx2 if !avx2_fma() => Err(Error::Unsupported {
            kernel: "attention products on the packed AVX2 GEMM",
            needs: "AVX2 and FMA",
        }),
        AttentionProducts::Int8(kernel) if !kernel.runs_here() => Err(Error::Unsupported {
            kernel: products.name(),
            needs: "the int8 kernel's instructions",
        }),
        _ => Ok(()),
    }
}

/// What the (head, sequence) tasks of one call share.
struct HeadTasks<'a> {
    a: &'a Attention<'a>,
    /// How the products run (checked against the CPU).
    products: AttentionProducts,
    /// Query rows per block.
    block: usize,
    /// Whether [`relative_tile8`] adds the position terms ([`Terms::tiles`]).
    tiles: bool,
    context: SharedMut,
    probs: Option<SharedMut>,
}

/// One task's operands, shared by its query blocks.
struct TaskOperands<'s> {
    h: usize,
    b: usize,
    /// Q of head `h`, sequence `b`: an `[L, d]` view.
    q: MatRef,
    /// `Kᵀ [d, L]` and `V [L, d]` as right operands.
    keys: Rhs<'s>,
    values: Rhs<'s>,
    /// Head `h`'s c2p position table as a right operand `[d, W]`, when c2p is on.
    c2p_table: Option<(&'s Relative<'s>, Rhs<'s>)>,
    /// Sequence `b`'s `[L, L]` mask block (`None`: all zeros).
    mask: Option<&'s [f32]>,
    /// Every key's p2c scores `[L, W]` (plus [`PAD`]).
    p2c: &'s [f32],
}

impl<'a> HeadTasks<'a> {
    fn new(
        a: &'a Attention<'a>,
        products: AttentionProducts,
        context: &mut [f32],
        probs: Option<&mut [f32]>,
    ) -> Self {
        let len = a.dims.len;
        let width = a.relative.as_ref().map_or(0, |r| r.width);
        let tiles = a.relative.as_ref().is_some_and(|r| {
            r.key.is_some()
                && r.query.is_some()
                && unit_steps(r.c2p_slot)
                && unit_steps(r.p2c_slot)
                && avx2_fma()
        });
        Self {
            a,
            products,
            block: block_rows(len, width).min(len),
            tiles,
            context: SharedMut(context.as_mut_ptr()),
            probs: probs.map(|p| SharedMut(p.as_mut_ptr())),
        }
    }

    /// Q, K and V of head `h`, sequence `b`: `[L, d]` views with row stride `3*H*d`.
    fn views(&self, h: usize, b: usize) -> [MatRef; 3] {
        let Dims {
            len,
            heads,
            head_size,
            ..
        } = self.a.dims;
        let all = heads * head_size;
        let base = b * len * 3 * all + h * head_size;
        [0, all, 2 * all].map(|offset| MatRef {
            ptr: self.a.qkv[base + offset..].as_ptr(),
            rs: 3 * all as isize,
            cs: 1,
        })
    }

    /// Task `task`: head `task / B`, sequence `task % B`. Packs `Kᵀ`, `V` and the position
    /// tables, computes every key's p2c scores, then runs the query blocks.
    fn run(&self, scratch: &mut Scratch, task: usize) {
        let Dims {
            batch,
            len,
            head_size,
            ..
        } = self.a.dims;
        let relative = self.a.relative.as_ref();
        scratch.fit(self.block, len, relative.map_or(0, |r| r.width));
        let (h, b) = (task / batch, task % batch);
        let [q, k, v] = self.views(h, b);
        let kt = MatRef {
            ptr: k.ptr,
            rs: 1,
            cs: k.rs,
        };
        let Scratch {
            scores,
            c2p,
            p2c,
            keys,
            values,
            table,
            keys_q,
            values_q,
            table_q,
            pack,
        } = scratch;
        // SAFETY: `check` verified the qkv buffer against these shapes, so every element of
        // the views lies in it; the scratch is this task's; `products` was checked against
        // the CPU.
        let (keys, values) = unsafe {
            (
                Rhs::new((keys, keys_q), (head_size, len), kt, self.products),
                Rhs::new((values, values_q), (len, head_size), v, self.products),
            )
        };
        if let Some((rel, t)) = relative.and_then(|r| Some((r, r.query?))) {
            let bufs = (&mut *table, &mut *table_q);
            let rhs = position_table(rel, (t, false), h, head_size, bufs, self.products);
            position_term(rel, rhs, k, 0..len, len, true, p2c, pack);
        }
        let ops = TaskOperands {
            h,
            b,
            q,
            keys,
            values,
            c2p_table: relative.and_then(|r| Some((r, r.key?))).map(|(rel, t)| {
                let bufs = (table, table_q);
                (
                    rel,
                    position_table(rel, (t, true), h, head_size, bufs, self.products),
                )
            }),
            mask: self.a.masked[b].then(|| &self.a.mask[b * len * len..(b + 1) * len * len]),
            p2c,
        };
        for i0 in (0..len).step_by(self.block) {
            self.query_block(&ops, i0, scores, c2p, pack);
        }
    }

    /// The query rows `i0..` of one block: `Q·Kᵀ` and the c2p scores, the fused gather +
    /// mask + softmax pass, the probabilities' copy, and `P·V` into the context rows.
    fn query_block(
        &self,
        ops: &TaskOperands,
        i0: usize,
        scores: &mut [f32],
        c2p: &mut [f32],
        pack: &mut LhsScratch,
    ) {
        let Dims {
            len,
            heads,
            head_size,
            ..
        } = self.a.dims;
        let (all, rows) = (heads * head_size, self.block.min(len - i0));
        // SAFETY: rows i0..i0 + rows of the [L, d] view Q (i0 < L); `scores` holds the block's
        // [rows, L] and is this task's.
        unsafe {
            let lhs = from_row(ops.q, i0);
            ops.keys
                .multiply(rows, 0..len, scores.as_mut_ptr(), len, lhs, pack)
        };
        if let Some((rel, rhs)) = ops.c2p_table {
            position_term(rel, rhs, ops.q, i0..i0 + rows, len, false, c2p, pack);
        }
        let block_scores = &mut scores[..rows * len];
        let terms = self.a.relative.as_ref().map(|r| Terms {
            c2p: r.key.map(|_| &c2p[..]),
            p2c: r.query.map(|_| ops.p2c),
            c_slots: r.c2p_slot,
            p_slots: r.p2c_slot,
            width: r.width,
            tiles: self.tiles,
        });
        fused_softmax(block_scores, terms, ops.mask, i0, len);
        if let Some(out) = self.probs {
            // SAFETY: rows i0.. of block (b, h) of probs lie in it (`check`) and are written
            // by this task only.
            let dst = unsafe {
                let at = (ops.b * heads + ops.h) * len * len + i0 * len;
                std::slice::from_raw_parts_mut(out.get().add(at), rows * len)
            };
            dst.copy_from_slice(block_scores);
        }
        let p = MatRef {
            ptr: scores.as_ptr(),
            rs: len as isize,
            cs: 1,
        };
        // SAFETY: rows b*L + i0.. of context, columns h*d..(h+1)*d lie in it (`check`) and
        // belong to this task; `p` addresses the block's [rows, L] probabilities.
        unsafe {
            let dst = self
                .context
                .get()
                .add((ops.b * len + i0) * all + ops.h * head_size);
            ops.values.multiply(rows, 0..head_size, dst, all, p, pack)
        };
    }
}

/// Head `h`'s active position rows of `table` (c2p's keys or p2c's queries: `key`) as the
/// right operand `[d, W]` of a position product: element `(e, s)` = `table[h, first + s, e]`
/// (for int8 products, the table quantised once where the call has it).
fn position_table<'a>(
    rel: &Relative<'a>,
    (table, key): (&'a [f32], bool),
    h: usize,
    d: usize,
    bufs: (&'a mut Vec<f32>, &'a mut QuantRhs),
    products: AttentionProducts,
) -> Rhs<'a> {
    if let (AttentionProducts::Int8(kernel), Some(tables)) = (products, rel.quantised) {
        if let Some(rhs) = tables
            .head(h, key)
            .filter(|q| q.cols() == rel.table_rows && q.depth() == d)
        {
            return Rhs::Quant {
                rhs,
                kernel,
                offset: rel.first_slot,
            };
        }
    }
    let active = MatRef {
        ptr: table[(h * rel.table_rows + rel.first_slot) * d..].as_ptr(),
        rs: 1,
        cs: d as isize,
    };
    // SAFETY: `check` verified that the W active rows of d values lie in the table;
    // `products` was checked against the CPU.
    unsafe { Rhs::new(bufs, (d, rel.width), active, products) }
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
    pack: &mut LhsScratch,
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
pub fn unit_steps(slots: &[u32]) -> bool {
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
    // SAFETY: the CPU has AVX2 (contract). With unit slot steps and d0 - 7 >= 0, d0 + 7 <=
    // 2L - 2, every 8-wide slot load reads entries of the 2L - 1 slot tables; every slot is
    // below W, so each 8-wide row load starts inside a c2p / p2c row and ends at most 7
    // values past it, inside the PAD values; the store covers rows t..t + 8, keys j..j + 8
    // of the block.
    unsafe {
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
}

/// The transpose of 8 rows of 8 lanes.
///
/// # Safety
/// The CPU has AVX2.
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
fn check(a: &Attention, context_len: usize, probs: Option<&[f32]>) -> Result<()> {
    let Dims {
        batch,
        len,
        heads,
        head_size,
    } = a.dims;
    let tokens = batch * len;
    let all = heads * head_size;
    if a.masked.len() != batch {
        return Err(Error::shape(
            "attention",
            format!("{} mask flags for a batch of {batch}", a.masked.len()),
        ));
    }
    // An unpadded sequence has no mask: an empty one is allowed where no block is read.
    let no_mask = a.mask.is_empty() && !a.masked.contains(&true);
    let mut ok = a.qkv.len() == tokens * 3 * all
        && (a.mask.len() == batch * len * len || no_mask)
        && context_len == tokens * all
        && probs.is_none_or(|p| p.len() == batch * heads * len * len);
    if let Some(rel) = &a.relative {
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
        Err(Error::shape(
            "attention",
            format!("buffers do not match B={batch} L={len} H={heads} d={head_size}"),
        ))
    }
}
