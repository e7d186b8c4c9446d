//! Unigram segmentation: the optimised Viterbi of sentencepiece's `unigram_model.cc`
//! (`Model::EncodeOptimized`), including its float arithmetic, so ties resolve identically.

use super::trie::ByteTrie;

/// sentencepiece's penalty subtracted from the lowest piece score to score an unknown character.
const UNK_PENALTY: f32 = 10.0;

/// The vocabulary view the Viterbi search needs.
#[derive(Debug, Clone)]
pub struct UnigramModel {
    /// NORMAL, USER_DEFINED and UNUSED pieces → id, with the score stored alongside.
    pub trie: ByteTrie,
    /// Whether any USER_DEFINED piece exists (skips a lookup per candidate otherwise).
    pub has_user: bool,
    /// Whether any UNUSED piece exists (they are in the trie but never produced).
    pub has_unused: bool,
    /// Per id: 0 normal, 1 user-defined, 2 unused (others are never in the trie).
    pub kinds: Vec<u8>,
    /// The unknown piece id.
    pub unk_id: u32,
    /// Lowest score over NORMAL pieces.
    pub min_score: f32,
    /// Highest score over NORMAL pieces (starts at `FLT_MIN` as in sentencepiece).
    pub max_score: f32,
}

/// Kind codes stored in [`UnigramModel::kinds`].
pub const KIND_NORMAL: u8 = 0;
/// User-defined piece.
pub const KIND_USER: u8 = 1;
/// Unused piece.
pub const KIND_UNUSED: u8 = 2;

#[derive(Clone, Copy)]
struct BestPath {
    id: u32,
    score: f32,
    /// Start of the last piece of the best path ending here; `UNSET` before any path.
    starts_at: u32,
}

const UNSET: u32 = u32::MAX;

impl UnigramModel {
    /// Segments `normalized` into `(start, end, id)` byte ranges; unknown characters get `unk_id`.
    pub fn encode(&self, normalized: &str, out: &mut Vec<(usize, usize, u32)>) {
        let text = normalized.as_bytes();
        let size = text.len();
        if size == 0 {
            return;
        }
        if u32::try_from(size).is_err() {
            // Longer than 4 GiB: treat as unknown rather than overflow the offsets.
            out.push((0, size, self.unk_id));
            return;
        }
        let unset = BestPath {
            id: self.unk_id,
            score: 0.0,
            starts_at: UNSET,
        };
        let mut best = vec![unset; size + 1];
        let unk_score = self.min_score - UNK_PENALTY;
        let mut starts_at = 0usize;
        while starts_at < size {
            let till_here = best.get(starts_at).map_or(0.0, |b| b.score);
            let mblen = char_len(text.get(starts_at).copied().unwrap_or(0)).min(size - starts_at);
            let mut has_single_node = false;
            let rest = text.get(starts_at..).unwrap_or_default();
            self.trie.common_prefixes_aux(rest, |length, id, score| {
                let kind = if self.has_user || self.has_unused {
                    self.kinds.get(id as usize).copied().unwrap_or(KIND_NORMAL)
                } else {
                    KIND_NORMAL
                };
                if kind == KIND_UNUSED {
                    return;
                }
                let is_user = kind == KIND_USER;
                let candidate = if is_user {
                    // `length * max_score_ - 0.1` is evaluated in double precision.
                    (length as f32 * self.max_score) as f64 - 0.1 + f64::from(till_here)
                } else {
                    f64::from(score + till_here)
                };
                if let Some(target) = best.get_mut(starts_at + length) {
                    if target.starts_at == UNSET || candidate > f64::from(target.score) {
                        *target = BestPath {
                            id,
                            score: candidate as f32,
                            starts_at: starts_at as u32,
                        };
                    }
                }
                if length == mblen {
                    has_single_node = true;
                }
            });
            if !has_single_node {
                if let Some(target) = best.get_mut(starts_at + mblen) {
                    let candidate = unk_score + till_here;
                    if target.starts_at == UNSET || candidate > target.score {
                        *target = BestPath {
                            id: self.unk_id,
                            score: candidate,
                            starts_at: starts_at as u32,
                        };
                    }
                }
            }
            starts_at += mblen.max(1);
        }
        Self::backtrack(&best, size, out);
    }

    fn backtrack(best: &[BestPath], size: usize, out: &mut Vec<(usize, usize, u32)>) {
        let first = out.len();
        let mut ends_at = size;
        while ends_at > 0 {
            let Some(node) = best.get(ends_at) else {
                break;
            };
            let start = if node.starts_at != UNSET && (node.starts_at as usize) < ends_at {
                node.starts_at as usize
            } else {
                0
            };
            out.push((start, ends_at, node.id));
            ends_at = start;
        }
        if let Some(tail) = out.get_mut(first..) {
            tail.reverse();
        }
    }
}

/// Byte length of the UTF-8 sequence starting with `lead` (sentencepiece's `OneCharLen`).
#[inline]
pub fn char_len(lead: u8) -> usize {
    const TABLE: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    TABLE.get(usize::from(lead >> 4)).copied().unwrap_or(1)
}
