//! Disentangled self-attention on flat buffers: one task per (head, sequence), each computing
//! `Q·Kᵀ`, the c2p and p2c position scores over the active slots, one fused
//! gather + mask + softmax pass, and `P·V` written straight into the context rows.
//!
//! Mirrors `DisentangledSelfAttention.forward` / `disentangled_attention_bias`:
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L199>

use std::cell::RefCell;

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

/// Query rows and key columns per tile of the fused score pass.
const QUERY_BLOCK: usize = 32;
const KEY_BLOCK: usize = 64;

thread_local! {
    /// Each worker's scratch, kept across calls (fresh multi-MiB buffers per call would cost
    /// page faults on every layer).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Per-task scratch, reused across the tasks a worker runs.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    c2p: Vec<f32>,
    p2c: Vec<f32>,
    /// Packed operands for the products (when the AVX2 kernel runs them).
    pack: PackScratch,
    /// One head's active position table, packed once for all its query blocks.
    table: Vec<f32>,
}

impl Scratch {
    /// Sizes the buffers for one (head, sequence) task; every product overwrites what it uses.
    fn fit(&mut self, len: usize, width: usize) {
        self.scores.resize(len * len, 0.0);
        self.c2p.resize(len * width, 0.0);
        self.p2c.resize(len * width, 0.0);
    }
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` on this thread: the AVX2 kernel where the CPU has it,
/// else the `gemm` crate.
///
/// # Safety
/// As for [`sgemm::matmul`].
unsafe fn product(
    shape: (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    lhs: MatRef,
    rhs: MatRef,
    pack: &mut PackScratch,
) {
    if sgemm::available() {
        sgemm::matmul(shape, dst, dst_rs, lhs, rhs, pack);
    } else {
        gemm::matmul(shape, dst, dst_rs as isize, lhs, rhs, false);
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
    let head_task = |scratch: &mut Scratch, task: usize| {
        scratch.fit(len, width);
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
        // SAFETY: `check` verified every buffer against these shapes; scratch is private.
        unsafe {
            product(
                (len, len, head_size),
                scratch.scores.as_mut_ptr(),
                len,
                q,
                kt,
                &mut scratch.pack,
            )
        };
        if let Some(rel) = relative {
            position_scores(rel, dims, h, q, k, scratch);
        }
        let bias_b = masked[b].then(|| &bias[b * len * len..(b + 1) * len * len]);
        fused_softmax(scratch, relative, bias_b, len, width);
        if let Some(out) = probs_out {
            // SAFETY: block (b, h) of probs is written by this task only.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(
                    out.get().add((b * heads + h) * len * len),
                    len * len,
                )
            };
            dst.copy_from_slice(&scratch.scores);
        }
        let p = MatRef {
            ptr: scratch.scores.as_ptr(),
            rs: len as isize,
            cs: 1,
        };
        // SAFETY: rows b*L.. of context, columns h*d..(h+1)*d belong to this task only.
        unsafe {
            let dst = ctx_out.get().add(b * len * all + h * head_size);
            product((len, head_size, len), dst, all, p, v, &mut scratch.pack)
        };
    };
    (0..heads * batch).into_par_iter().for_each(|task| {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => head_task(&mut scratch, task),
            Err(_) => head_task(&mut Scratch::default(), task),
        })
    });
    Ok(())
}

/// c2p (`Q · Kr_activeᵀ`) and p2c (`K · Qr_activeᵀ`), for the terms that are on, for one head
/// into scratch `[L, W]` blocks. Each block of [`QUERY_BLOCK`] rows gets only the slots the
/// score pass reads for it: c2p row `i` reads diagonals `i..i + L`, p2c row `j` (a key)
/// diagonals `L - 1 - j..2L - 1 - j`, so a block's slots span about `L + 32` diagonals of the
/// `2L - 1`, which skips ~25-40% of the products' columns.
fn position_scores(
    rel: &Relative,
    dims: Dims,
    h: usize,
    q: MatRef,
    k: MatRef,
    scratch: &mut Scratch,
) {
    let (len, d, w) = (dims.len, dims.head_size, rel.width);
    let terms = [
        (rel.key, q, &mut scratch.c2p, rel.c2p_slot, false),
        (rel.query, k, &mut scratch.p2c, rel.p2c_slot, true),
    ];
    let (pack, packed_table) = (&mut scratch.pack, &mut scratch.table);
    let packed = sgemm::available();
    for (table, content, out, slots, keys) in terms {
        let Some(table) = table else { continue };
        // rows first_slot.. of head h, transposed: element (e, s) = table[h, first + s, e]
        let active = MatRef {
            ptr: table[(h * rel.table_rows + rel.first_slot) * d..].as_ptr(),
            rs: 1,
            cs: d as isize,
        };
        if packed {
            // SAFETY: `check` verified that the W active rows of d values lie in the table.
            unsafe { sgemm::pack_rhs(packed_table, (d, w), active) };
        }
        for r0 in (0..len).step_by(QUERY_BLOCK) {
            let r1 = (r0 + QUERY_BLOCK).min(len);
            let diagonals = if keys {
                len - r1..2 * len - 1 - r0
            } else {
                r0..r1 + len - 1
            };
            let Some((lo, hi)) = slot_window(&slots[diagonals]) else {
                continue;
            };
            let lhs = MatRef {
                // SAFETY: row r0 < L of the [L, d] view.
                ptr: unsafe { content.ptr.offset(r0 as isize * content.rs) },
                ..content
            };
            // SAFETY: shapes checked in `check` (every slot is below W, so columns lo..=hi of
            // rows r0..r1 lie in the [L, W] block); scratch is private to the task.
            unsafe {
                let row0 = out.as_mut_ptr().add(r0 * w);
                if packed {
                    let m = (r1 - r0, d);
                    sgemm::matmul_packed(m, lo..hi + 1, w, row0, w, lhs, packed_table, pack);
                } else {
                    let rhs = MatRef {
                        ptr: active.ptr.add(lo * d),
                        ..active
                    };
                    product((r1 - r0, hi + 1 - lo, d), row0.add(lo), w, lhs, rhs, pack);
                }
            };
        }
    }
}

/// The smallest and largest slot in `slots` (`None` when empty).
fn slot_window(slots: &[u32]) -> Option<(usize, usize)> {
    let lo = *slots.iter().min()? as usize;
    let hi = *slots.iter().max()? as usize;
    Some((lo, hi))
}

simd_fn! {
/// `scores[i, j] = softmax_j(qk[i, j] + (c2p[i, δ] + p2c[j, δ']) + bias[i, j])`, in place
/// (`bias` `None`: all zeros).
fn fused_softmax(
    scratch: &mut Scratch,
    relative: Option<&Relative>,
    bias: Option<&[f32]>,
    len: usize,
    width: usize,
) {
    let (c2p_on, p2c_on) = relative.map_or((false, false), |r| (r.key.is_some(), r.query.is_some()));
    let Scratch {
        scores, c2p, p2c, ..
    } = scratch;
    let c2p = &c2p[..len * width];
    let p2c = &p2c[..len * width];
    // Tiles of QUERY_BLOCK x KEY_BLOCK: the p2c reads walk a diagonal across p2c rows, so a
    // tile keeps the rows and slots it touches in L1; each query block is then normalised
    // while its rows are still in cache.
    for i0 in (0..len).step_by(QUERY_BLOCK) {
        let i1 = (i0 + QUERY_BLOCK).min(len);
        for j0 in (0..len).step_by(KEY_BLOCK) {
            let j1 = (j0 + KEY_BLOCK).min(len);
            for i in i0..i1 {
                let cells = i * len + j0..i * len + j1;
                let row = &mut scores[cells.clone()];
                // Slots for keys j0..j1 by diagonal d = i - j + L - 1 (so d falls as j rises).
                let (c_slots, p_slots) = relative.map_or((&[][..], &[][..]), |r| (r.c2p_slot, r.p2c_slot));
                let top = i + len - 1;
                let c2p_row = &c2p[i * width..(i + 1) * width];
                match (c2p_on, p2c_on) {
                    (true, true) => {
                        for (jj, s) in row.iter_mut().enumerate() {
                            let j = j0 + jj;
                            // SAFETY: `check` verified both slot tables hold 2L - 1 entries,
                            // each below W; top - j < 2L - 1 and j < L.
                            *s += unsafe {
                                let d = top - j;
                                c2p_row.get_unchecked(*c_slots.get_unchecked(d) as usize)
                                    + p2c.get_unchecked(j * width + *p_slots.get_unchecked(d) as usize)
                            };
                        }
                    }
                    (true, false) => {
                        for (jj, s) in row.iter_mut().enumerate() {
                            // SAFETY: as above.
                            *s += unsafe {
                                c2p_row.get_unchecked(*c_slots.get_unchecked(top - j0 - jj) as usize)
                            };
                        }
                    }
                    (false, true) => {
                        for (jj, s) in row.iter_mut().enumerate() {
                            let j = j0 + jj;
                            // SAFETY: as above.
                            *s += unsafe {
                                p2c.get_unchecked(j * width + *p_slots.get_unchecked(top - j) as usize)
                            };
                        }
                    }
                    (false, false) => {}
                }
                // (qk + relative) + mask, the candle path's order.
                if let Some(bias) = bias {
                    for (s, m) in row.iter_mut().zip(&bias[cells]) {
                        *s += m;
                    }
                }
            }
        }
        for row in scores[i0 * len..i1 * len].chunks_exact_mut(len) {
            rows::softmax(row);
        }
    }
}
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
