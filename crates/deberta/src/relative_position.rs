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

/// The relative-table slots each diagonal of the `[L, L]` score grid reads, over the `W`
/// active slots `first_slot..first_slot + W` of the `2S`-row relative table: entry `(i, j)` of
/// c2p reads row `i`, slot `c2p_slot[i - j + len - 1]`, and of p2c row `j`, slot
/// `p2c_slot[i - j + len - 1]` (relative positions depend on `i - j` only). What the fused CPU
/// path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelativeSlots {
    pub c2p_slot: Vec<u32>,
    pub p2c_slot: Vec<u32>,
    /// First table row any entry reads.
    pub first_slot: usize,
    /// Number of table rows read (`W`).
    pub width: usize,
}

impl RelativeSlots {
    /// c2p reads slot `clamp(rel[i,j] + span, 0, 2*span-1)`, p2c slot
    /// `clamp(-rel[j,i] + span, 0, 2*span-1)` (transformers' gather followed by a transpose).
    pub fn new(len: usize, span: usize, bucket_size: i64, max_position: i64) -> Self {
        let bucket = |r: i64| {
            if bucket_size > 0 && max_position > 0 {
                log_bucket(r, bucket_size, max_position)
            } else {
                r
            }
        };
        let last = 2 * span as i64 - 1;
        let slot = |r: i64| (r + span as i64).clamp(0, last);
        // Diagonal k = i - j + len - 1, i.e. i - j = k - (len - 1).
        let diagonals = (2 * len).saturating_sub(1);
        let offset = len as i64 - 1;
        let c2p: Vec<i64> = (0..diagonals as i64)
            .map(|k| slot(bucket(k - offset)))
            .collect();
        let p2c: Vec<i64> = (0..diagonals as i64)
            .map(|k| slot(-bucket(offset - k)))
            .collect();
        let lo = c2p.iter().chain(&p2c).copied().min().unwrap_or(0);
        let hi = c2p.iter().chain(&p2c).copied().max().unwrap_or(0);
        Self {
            c2p_slot: c2p.iter().map(|&s| (s - lo) as u32).collect(),
            p2c_slot: p2c.iter().map(|&s| (s - lo) as u32).collect(),
            first_slot: lo as usize,
            width: (hi - lo + 1) as usize,
        }
    }
}

/// Flat gather indices that turn `[L, W]` position scores into `[L, L]` ones (the candle path).
pub struct RelativeIndex {
    /// c2p: entry `(i, j)` is `i * W + c2p_slot[i - j + len - 1]`.
    pub c2p: Tensor,
    /// p2c: entry `(i, j)` is `j * W + p2c_slot[i - j + len - 1]`.
    pub p2c: Tensor,
    /// First table row any entry reads.
    pub first_slot: usize,
    /// Number of table rows read (`W`).
    pub width: usize,
}

impl RelativeIndex {
    /// The `len * len` u32 gather tables of `slots` on `device`.
    pub fn new(slots: &RelativeSlots, len: usize, device: &Device) -> Result<Self> {
        let w = slots.width as u32;
        let mut c2p = Vec::with_capacity(len * len);
        let mut p2c = Vec::with_capacity(len * len);
        for i in 0..len {
            for j in 0..len {
                let d = i + len - 1 - j;
                c2p.push(i as u32 * w + slots.c2p_slot[d]);
                p2c.push(j as u32 * w + slots.p2c_slot[d]);
            }
        }
        Ok(Self {
            c2p: Tensor::from_vec(c2p, len * len, device)?,
            p2c: Tensor::from_vec(p2c, len * len, device)?,
            first_slot: slots.first_slot,
            width: slots.width,
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
    fn diagonal_slots_read_what_the_square_grid_reads() {
        for (len, span, buckets, max_pos) in [(300, 256, 256, 512), (40, 16, -1, 16), (1, 4, 4, 8)]
        {
            let slots = RelativeSlots::new(len, span, buckets, max_pos);
            let index = RelativeIndex::new(&slots, len, &Device::Cpu).unwrap();
            let c2p = index.c2p.to_vec1::<u32>().unwrap();
            let p2c = index.p2c.to_vec1::<u32>().unwrap();
            assert_eq!(slots.c2p_slot.len(), 2 * len - 1);
            let rel = relative_positions(len, buckets, max_pos);
            let last = 2 * span as i64 - 1;
            let slot = |r: i64| (r + span as i64).clamp(0, last) as u32 - slots.first_slot as u32;
            let w = slots.width as u32;
            for i in 0..len {
                for j in 0..len {
                    assert_eq!(c2p[i * len + j], i as u32 * w + slot(rel[i * len + j]));
                    assert_eq!(p2c[i * len + j], j as u32 * w + slot(-rel[j * len + i]));
                }
            }
        }
    }
}
