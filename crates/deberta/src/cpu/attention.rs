//! The attention step of a fast-path layer: the mask, the relative-position tables and slot
//! tables borrowed from candle's tensors and the encoder's `RelativeSlots`, and the
//! `deberta-kernels` attention run on them.

use candle_core::Tensor;
use deberta_kernels::attention::{
    attention, attention_unpadded, Attention, Dims, Relative, UnpaddedSequence,
};

use super::context::{AttentionContext, UnpaddedContext};
use super::layer::{LayerBuffers, LayerParams};
use super::View;
use crate::Result;

/// `buffers.context [B*L, H*d]` from `buffers.qkv`, and the probabilities into `probs`
/// `[B, H, L, L]` when given; the products on the kernel this CPU's features pick.
pub(super) fn attend(
    p: &LayerParams,
    ctx: &AttentionContext,
    (batch, len): (usize, usize),
    buffers: &mut LayerBuffers,
    probs: Option<&mut [f32]>,
) -> Result<()> {
    let dims = Dims {
        batch,
        len,
        heads: p.heads,
        head_size: p.head_size,
    };
    let mask_view = View::new(ctx.bias, "attention mask")?;
    let key_view = p
        .pos_key
        .map(|t| View::new(t, "position keys"))
        .transpose()?;
    let query_view = p
        .pos_query
        .map(|t| View::new(t, "position queries"))
        .transpose()?;
    let relative = match (ctx.index, key_view.is_some() || query_view.is_some()) {
        (Some(index), true) => Some(Relative {
            key: key_view.as_ref().map(|v| v.slice()).transpose()?,
            query: query_view.as_ref().map(|v| v.slice()).transpose()?,
            table_rows: table_rows(p.pos_key.or(p.pos_query))?,
            c2p_slot: &index.c2p_slot,
            p2c_slot: &index.p2c_slot,
            first_slot: index.first_slot,
            width: index.width,
            quantised: p.prepared.and_then(|p| p.quantised_tables()),
        }),
        _ => None,
    };
    let inputs = Attention {
        dims,
        qkv: &buffers.qkv,
        mask: mask_view.slice()?,
        masked: &ctx.masked,
        relative,
    };
    let products = p.attention_products();
    attention(&inputs, products, &mut buffers.context, probs)?;
    Ok(())
}

/// `buffers.context [T, H*d]` from `buffers.qkv [T, 3*H*d]` for sequences concatenated row
/// by row, each at its own length with its own slot tables.
pub(super) fn attend_unpadded(
    p: &LayerParams,
    ctx: &UnpaddedContext,
    buffers: &mut LayerBuffers,
) -> Result<()> {
    let key_view = p
        .pos_key
        .map(|t| View::new(t, "position keys"))
        .transpose()?;
    let query_view = p
        .pos_query
        .map(|t| View::new(t, "position queries"))
        .transpose()?;
    let key = key_view.as_ref().map(|v| v.slice()).transpose()?;
    let query = query_view.as_ref().map(|v| v.slice()).transpose()?;
    let table_rows = table_rows(p.pos_key.or(p.pos_query))?;
    let sequences: Vec<UnpaddedSequence> = ctx
        .lens
        .iter()
        .zip(&ctx.slots)
        .map(|(&len, slots)| UnpaddedSequence {
            len,
            relative: slots
                .filter(|_| key.is_some() || query.is_some())
                .map(|index| Relative {
                    key,
                    query,
                    table_rows,
                    c2p_slot: &index.c2p_slot,
                    p2c_slot: &index.p2c_slot,
                    first_slot: index.first_slot,
                    width: index.width,
                    quantised: p.prepared.and_then(|p| p.quantised_tables()),
                }),
        })
        .collect();
    let products = p.attention_products();
    let dims = (p.heads, p.head_size);
    attention_unpadded(
        &sequences,
        dims,
        &buffers.qkv,
        products,
        &mut buffers.context,
    )?;
    Ok(())
}

/// Rows per head (`2S`) of a `[heads, 2S, d]` position table.
fn table_rows(table: Option<&Tensor>) -> Result<usize> {
    Ok(match table {
        Some(t) => t.dims3()?.1,
        None => 0,
    })
}

/// The kernels' attention against an element-by-element reference, on the model's own
/// relative-position slot tables (`RelativeSlots`).
#[cfg(test)]
mod tests {
    use deberta_kernels::attention::{block_rows, unit_steps, QUERY_BLOCK};
    use deberta_kernels::int8_products::QuantTables;
    use deberta_kernels::test_util::{max_diff, pseudo_random};
    use deberta_kernels::AttentionProducts;

    use super::*;
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
        let tables = QuantTables::new(
            Some(&key_table),
            Some(&query_table),
            (dims.heads, table_rows, dims.head_size),
        )
        .unwrap();
        let paths = product_paths(&tables);
        let mut int8_context: Option<Vec<f32>> = None;
        for ((c2p, p2c), (products, quantised)) in
            terms.into_iter().flat_map(|t| paths.map(|p| (t, p)))
        {
            let rel = Relative {
                key: c2p.then_some(&key_table[..]),
                query: p2c.then_some(&query_table[..]),
                table_rows,
                c2p_slot: &index.c2p_slot,
                p2c_slot: &index.p2c_slot,
                first_slot: index.first_slot,
                width: index.width,
                quantised,
            };
            let rel = (c2p || p2c).then_some(&rel);
            let mut context = vec![f32::NAN; dims.batch * len * all];
            let mut probs = vec![f32::NAN; dims.batch * dims.heads * len * len];
            let inputs = Attention {
                dims,
                qkv: &qkv,
                mask: &bias,
                masked: &masked,
                relative: rel.copied(),
            };
            attention(&inputs, products, &mut context, Some(&mut probs)).unwrap();
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
            let tables = quantised.is_some();
            let name = products.name();
            println!(
                "c2p {c2p} p2c {p2c} {name} (tables {tables}): context {dc:.2e}, probs {dp:.2e}"
            );
            if let AttentionProducts::Int8(_) = products {
                // Int8 operands: the quantisation error, and a path really taken. The tables
                // quantised once give the same bits as each task's own quantisation.
                assert!(
                    dc < INT8_TOLERANCE && dp < INT8_TOLERANCE,
                    "context {dc}, probs {dp}"
                );
                assert!(dc > 1e-6, "int8 products not taken: {dc}");
                match int8_context.take() {
                    Some(per_task) => assert_eq!(per_task, context, "c2p {c2p} p2c {p2c}"),
                    None => int8_context = Some(context.clone()),
                }
            } else {
                assert!(dc < 1e-6 && dp < 1e-6, "context {dc}, probs {dp}");
            }
            assert!(probs[len * len * 2..]
                .chunks_exact(len)
                .all(|r| r[len - 37..] == [0.0; 37]));
        }
    }

    /// Largest |difference| from the f64 reference the int8 products may give here (values in
    /// ±0.5, head size 8: measured 4.6-5.8e-4 for the context, 0.5-1.7e-4 for the
    /// probabilities).
    const INT8_TOLERANCE: f32 = 5e-3;

    /// The product paths the tests run: the `gemm` crate, this CPU's f32 choice, and int8 on
    /// this CPU's int8 kernel, each task quantising its own position window, then with the
    /// tables quantised once (`tables`).
    fn product_paths(tables: &QuantTables) -> [(AttentionProducts, Option<&QuantTables>); 4] {
        let plan = deberta_kernels::KernelPlan::detect();
        let int8 = AttentionProducts::Int8(plan.int8_kernel());
        [
            (AttentionProducts::GemmCrate, None),
            (plan.attention_products(), None),
            (int8, None),
            (int8, Some(tables)),
        ]
    }

    /// The position terms of a sequence with slot tables `index` (none without a table).
    fn relative_of<'a>(
        index: &'a RelativeSlots,
        (key, query): (Option<&'a [f32]>, Option<&'a [f32]>),
        table_rows: usize,
        quantised: Option<&'a QuantTables>,
    ) -> Option<Relative<'a>> {
        (key.is_some() || query.is_some()).then(|| Relative {
            key,
            query,
            table_rows,
            c2p_slot: &index.c2p_slot,
            p2c_slot: &index.p2c_slot,
            first_slot: index.first_slot,
            width: index.width,
            quantised,
        })
    }

    /// An unpadded batch (lengths 262, 1, 37, 100, each with its own slot tables) gives each
    /// sequence exactly what a batch of that sequence alone gives, on both product paths and
    /// with each position term on and off (int8 included).
    #[test]
    fn unpadded_sequences_match_their_own_batches() {
        let (heads, d) = (2, 8);
        let all = heads * d;
        let lens = [262usize, 1, 37, 100];
        let tokens: usize = lens.iter().sum();
        let slots: Vec<RelativeSlots> = lens
            .iter()
            .map(|&l| RelativeSlots::new(l, 32, 32, 128))
            .collect();
        let table_rows = 64;
        let key_table = pseudo_random(heads * table_rows * d, 1);
        let query_table = pseudo_random(heads * table_rows * d, 2);
        let qkv = pseudo_random(tokens * 3 * all, 3);
        let terms = [(true, true), (true, false), (false, true), (false, false)];
        let tables =
            QuantTables::new(Some(&key_table), Some(&query_table), (heads, table_rows, d)).unwrap();
        let paths = product_paths(&tables);
        for ((c2p, p2c), (products, quantised)) in
            terms.into_iter().flat_map(|t| paths.map(|p| (t, p)))
        {
            let (key, query) = (
                c2p.then_some(&key_table[..]),
                p2c.then_some(&query_table[..]),
            );
            let relative = |index| relative_of(index, (key, query), table_rows, quantised);
            let sequences: Vec<UnpaddedSequence> = lens
                .iter()
                .zip(&slots)
                .map(|(&len, index)| UnpaddedSequence {
                    len,
                    relative: relative(index),
                })
                .collect();
            let mut context = vec![f32::NAN; tokens * all];
            attention_unpadded(&sequences, (heads, d), &qkv, products, &mut context).unwrap();
            let mut row = 0;
            for (&len, index) in lens.iter().zip(&slots) {
                let mask = vec![0f32; len * len];
                let inputs = Attention {
                    dims: Dims {
                        batch: 1,
                        len,
                        heads,
                        head_size: d,
                    },
                    qkv: &qkv[row * 3 * all..(row + len) * 3 * all],
                    mask: &mask,
                    masked: &[false],
                    relative: relative(index),
                };
                let mut want = vec![f32::NAN; len * all];
                attention(&inputs, products, &mut want, None).unwrap();
                let got = &context[row * all..(row + len) * all];
                assert_eq!(got, &want[..], "len {len}, c2p {c2p}, p2c {p2c}");
                row += len;
            }
        }
        let bad = [UnpaddedSequence {
            len: 3,
            relative: None,
        }];
        let mut short = vec![0f32; 2 * all];
        let products = AttentionProducts::GemmCrate;
        assert!(attention_unpadded(&bad, (heads, d), &qkv, products, &mut short).is_err());
    }
}
