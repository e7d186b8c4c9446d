//! Disentangled self-attention on flat buffers: one task per (head, sequence), each computing
//! `Q·Kᵀ`, the c2p and p2c position scores over the active slots, one fused
//! gather + mask + softmax pass, and `P·V` written straight into the context rows.
//!
//! Mirrors `DisentangledSelfAttention.forward` / `disentangled_attention_bias`:
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L199>

use rayon::prelude::*;

use super::gemm::{matmul, MatRef};
use super::{rows, simd_fn, SharedMut};
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
    /// `[L * L]` flat indices into a `[L, W]` c2p score block (see `RelativeIndex`).
    pub c2p: &'a [u32],
    /// `[L * L]` flat indices into a `[L, W]` p2c score block.
    pub p2c: &'a [u32],
    pub first_slot: usize,
    pub width: usize,
}

/// Query rows and key columns per tile of the fused score pass.
const QUERY_BLOCK: usize = 32;
const KEY_BLOCK: usize = 64;

/// Per-task scratch, reused across the tasks a worker runs.
struct Scratch {
    scores: Vec<f32>,
    c2p: Vec<f32>,
    p2c: Vec<f32>,
}

/// `qkv`: `[B*L, 3*H*d]` with biases added and K divided by the scale; `bias`: `[B, L, L]`
/// additive mask. Writes `context [B*L, H*d]` and, when given, `probs [B, H, L, L]`.
pub fn attention(
    dims: Dims,
    qkv: &[f32],
    bias: &[f32],
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
    let ctx_out = SharedMut(context.as_mut_ptr());
    let probs_out = probs.map(|p| SharedMut(p.as_mut_ptr()));
    let row_stride = 3 * all;
    (0..heads * batch).into_par_iter().for_each_init(
        || Scratch {
            scores: vec![0.0; len * len],
            c2p: vec![0.0; len * width],
            p2c: vec![0.0; len * width],
        },
        |scratch, task| {
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
                matmul(
                    (len, len, head_size),
                    scratch.scores.as_mut_ptr(),
                    len as isize,
                    q,
                    kt,
                    false,
                )
            };
            if let Some(rel) = relative {
                position_scores(rel, dims, h, q, k, scratch);
            }
            let bias_b = &bias[b * len * len..(b + 1) * len * len];
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
                matmul((len, head_size, len), dst, all as isize, p, v, false)
            };
        },
    );
    Ok(())
}

/// c2p (`Q · Kr_activeᵀ`) and p2c (`K · Qr_activeᵀ`), for the terms that are on, for one head
/// into scratch `[L, W]` blocks.
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
        (rel.key, q, &mut scratch.c2p),
        (rel.query, k, &mut scratch.p2c),
    ];
    for (table, content, out) in terms {
        let Some(table) = table else { continue };
        // rows first_slot.. of head h, transposed: element (e, s) = table[h, first + s, e]
        let active = MatRef {
            ptr: table[(h * rel.table_rows + rel.first_slot) * d..].as_ptr(),
            rs: 1,
            cs: d as isize,
        };
        // SAFETY: shapes checked in `check`; scratch is private to the task.
        unsafe {
            matmul(
                (len, w, d),
                out.as_mut_ptr(),
                w as isize,
                content,
                active,
                false,
            )
        };
    }
}

simd_fn! {
/// `scores[i, j] = softmax_j(qk[i, j] + (c2p[i, δ] + p2c[j, δ']) + bias[i, j])`, in place.
fn fused_softmax(
    scratch: &mut Scratch,
    relative: Option<&Relative>,
    bias: &[f32],
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
                let bias_row = &bias[cells.clone()];
                let (ci, pi) = match relative {
                    Some(rel) => (&rel.c2p[cells.clone()], &rel.p2c[cells]),
                    None => (&[][..], &[][..]),
                };
                match (c2p_on, p2c_on) {
                    (true, true) => {
                        for ((s, m), (c, p)) in row.iter_mut().zip(bias_row).zip(ci.iter().zip(pi)) {
                            // SAFETY: `check` verified every index is below L * W.
                            let r = unsafe {
                                c2p.get_unchecked(*c as usize) + p2c.get_unchecked(*p as usize)
                            };
                            *s = (*s + r) + m;
                        }
                    }
                    (true, false) => {
                        for ((s, m), c) in row.iter_mut().zip(bias_row).zip(ci) {
                            // SAFETY: as above.
                            *s = (*s + unsafe { c2p.get_unchecked(*c as usize) }) + m;
                        }
                    }
                    (false, true) => {
                        for ((s, m), p) in row.iter_mut().zip(bias_row).zip(pi) {
                            // SAFETY: as above.
                            *s = (*s + unsafe { p2c.get_unchecked(*p as usize) }) + m;
                        }
                    }
                    (false, false) => {
                        for (s, m) in row.iter_mut().zip(bias_row) {
                            *s += m;
                        }
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
        let cells = len * rel.width;
        ok &= rel.key.is_none_or(|t| t.len() == table)
            && rel.query.is_none_or(|t| t.len() == table)
            && rel.first_slot + rel.width <= rel.table_rows
            && rel.c2p.len() == len * len
            && rel.p2c.len() == len * len
            && rel.c2p.iter().chain(rel.p2c).all(|&i| (i as usize) < cells);
    }
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "CPU fast path: attention buffers do not match B={batch} L={len} H={heads} d={head_size}"
        )))
    }
}
