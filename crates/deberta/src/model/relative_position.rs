//! Relative positions and their (log-bucketed) indices into the relative embedding table.
//!
//! Reference: `make_log_bucket_position`, `build_relative_position` and the gathers of
//! `DisentangledSelfAttention.disentangled_attention_bias` in
//! <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/modeling_deberta_v2.py#L56>

use candle_core::{Device, Tensor};

use crate::Result;

/// transformers' `make_log_bucket_position` for one relative position, evaluated in f32 as
/// PyTorch does (true division, `ceil`).
pub fn log_bucket(rel: i64, bucket_size: i64, max_position: i64) -> i64 {
    let mid = bucket_size / 2;
    let abs_pos = if rel < mid && rel > -mid {
        mid - 1
    } else {
        rel.abs()
    };
    if abs_pos <= mid {
        return rel;
    }
    let ratio = ((max_position - 1) as f64 / mid as f64) as f32;
    let scaled = (abs_pos as f32 / mid as f32).ln() / ratio.ln() * (mid - 1) as f32;
    let log_pos = scaled.ceil() + mid as f32;
    (log_pos * rel.signum() as f32) as i64
}

/// `rel[i * len + j] = bucket(i - j)` for a square `[len, len]` grid (query i, key j).
/// Buckets apply only when both `bucket_size` and `max_position` are positive.
pub fn relative_positions(len: usize, bucket_size: i64, max_position: i64) -> Vec<i64> {
    let mut rel = Vec::with_capacity(len * len);
    for i in 0..len as i64 {
        for j in 0..len as i64 {
            let r = i - j;
            rel.push(if bucket_size > 0 && max_position > 0 {
                log_bucket(r, bucket_size, max_position)
            } else {
                r
            });
        }
    }
    rel
}

/// Flat gather indices that turn `[L, W]` position scores into `[L, L]` ones, over the `W`
/// active slots `first_slot..first_slot + W` of the `2S`-row relative table.
pub struct RelativeIndex {
    /// c2p: entry `(i, j)` reads row `i`, slot `clamp(rel[i,j] + span, 0, 2*span-1)`.
    pub c2p: Tensor,
    /// p2c: entry `(i, j)` reads row `j`, slot `clamp(-rel[j,i] + span, 0, 2*span-1)`
    /// (transformers' gather followed by a transpose).
    pub p2c: Tensor,
    /// The same slots by diagonal: entry `(i, j)` of c2p is `i * W + c2p_slot[i - j + len - 1]`
    /// and of p2c `j * W + p2c_slot[i - j + len - 1]` (`2 * len - 1` entries each; the CPU
    /// fast path reads these instead of the `[L, L]` tables).
    pub c2p_slot: Vec<u32>,
    pub p2c_slot: Vec<u32>,
    /// First table row any entry reads.
    pub first_slot: usize,
    /// Number of table rows read (`W`).
    pub width: usize,
}

impl RelativeIndex {
    /// Builds both index tables for a sequence length, as `u32` tensors of `len * len` entries.
    pub fn new(
        len: usize,
        span: usize,
        bucket_size: i64,
        max_position: i64,
        device: &Device,
    ) -> Result<Self> {
        let rel = relative_positions(len, bucket_size, max_position);
        let last = 2 * span as i64 - 1;
        let slot = |r: i64| (r + span as i64).clamp(0, last);
        // rel[i, j] = bucket(i - j) is odd-symmetric, so both terms read the same slot range.
        let (lo, hi) = rel.iter().fold((last, 0), |(lo, hi), &r| {
            (lo.min(slot(r)).min(slot(-r)), hi.max(slot(r)).max(slot(-r)))
        });
        let width = (hi - lo + 1) as usize;
        let mut c2p = Vec::with_capacity(len * len);
        let mut p2c = Vec::with_capacity(len * len);
        let mut c2p_slot = vec![0u32; (2 * len).saturating_sub(1)];
        let mut p2c_slot = vec![0u32; (2 * len).saturating_sub(1)];
        for i in 0..len {
            for j in 0..len {
                let c = (slot(rel[i * len + j]) - lo) as u32;
                let p = (slot(-rel[j * len + i]) - lo) as u32;
                c2p.push((i * width) as u32 + c);
                p2c.push((j * width) as u32 + p);
                // rel[i, j] depends on i - j only.
                c2p_slot[i + len - 1 - j] = c;
                p2c_slot[i + len - 1 - j] = p;
            }
        }
        Ok(Self {
            c2p: Tensor::from_vec(c2p, len * len, device)?,
            p2c: Tensor::from_vec(p2c, len * len, device)?,
            c2p_slot,
            p2c_slot,
            first_slot: lo as usize,
            width,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_buckets_match_the_reference_values() {
        // Values computed with transformers' make_log_bucket_position (256 buckets, 512 positions).
        let cases = [
            (0, 0),
            (5, 5),
            (131, 131),
            (132, 131),
            (133, 132),
            (200, 169),
            (256, 192),
            (300, 207),
            (400, 233),
            (500, 254),
            (511, 255),
            (512, 256),
            (600, 270),
            (1000, 317),
            (2048, 383),
            (4096, 446),
        ];
        for (rel, bucket) in cases {
            assert_eq!(log_bucket(rel, 256, 512), bucket, "bucket({rel})");
            assert_eq!(log_bucket(-rel, 256, 512), -bucket, "bucket(-{rel})");
        }
    }

    #[test]
    fn unbucketed_positions_are_raw_differences() {
        let rel = relative_positions(3, -1, 512);
        assert_eq!(rel, vec![0, -1, -2, 1, 0, -1, 2, 1, 0]);
    }

    #[test]
    fn diagonal_slots_give_the_same_indices_as_the_square_tables() {
        for (len, span, buckets, max_pos) in [(300, 256, 256, 512), (40, 16, -1, 16), (1, 4, 4, 8)]
        {
            let index = RelativeIndex::new(len, span, buckets, max_pos, &Device::Cpu).unwrap();
            let c2p = index.c2p.to_vec1::<u32>().unwrap();
            let p2c = index.p2c.to_vec1::<u32>().unwrap();
            assert_eq!(index.c2p_slot.len(), 2 * len - 1);
            let w = index.width as u32;
            for i in 0..len {
                for j in 0..len {
                    let d = i + len - 1 - j;
                    assert_eq!(c2p[i * len + j], i as u32 * w + index.c2p_slot[d]);
                    assert_eq!(p2c[i * len + j], j as u32 * w + index.p2c_slot[d]);
                }
            }
        }
    }
}
