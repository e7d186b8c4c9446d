//! sentencepiece BPE segmentation (`bpe_model.cc`, `Model::SampleEncode` without dropout):
//! repeatedly merge the adjacent pair whose merged piece has the highest score, ties going to
//! the leftmost pair; merges that produce UNUSED pieces are undone at the end.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::trie::ByteTrie;
use super::unigram::{char_len, KIND_UNUSED};

/// The vocabulary view BPE needs.
#[derive(Debug, Clone)]
pub struct BpeModel {
    /// NORMAL, USER_DEFINED and UNUSED pieces → id.
    pub trie: ByteTrie,
    /// User-defined pieces (never merged with neighbours).
    pub user_defined: ByteTrie,
    /// Score per id.
    pub scores: Vec<f32>,
    /// Per id kind code (see [`super::unigram`]).
    pub kinds: Vec<u8>,
}

struct Candidate {
    left: usize,
    right: usize,
    score: f32,
    size: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Higher score first; on equal scores the smaller `left` first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Merged UNUSED piece → byte length of its left part (the last merge recorded wins, as in
/// sentencepiece's `rev_merge` map).
type RevMerge<'a> = HashMap<&'a [u8], usize>;

#[derive(Clone, Copy)]
struct Symbol {
    prev: Option<usize>,
    next: Option<usize>,
    freeze: bool,
    start: usize,
    len: usize,
}

impl BpeModel {
    /// Segments `normalized` into `(start, end, id)` ranges; `None` ids are resolved by the
    /// caller (`PieceToId`, which falls back to `<unk>`).
    pub fn encode(&self, normalized: &str, out: &mut Vec<(usize, usize, Option<u32>)>) {
        let text = normalized.as_bytes();
        let mut symbols = self.initial_symbols(text);
        if symbols.is_empty() {
            return;
        }
        let mut agenda = BinaryHeap::new();
        let mut rev_merge: RevMerge<'_> = HashMap::new();
        for i in 1..symbols.len() {
            self.maybe_add(text, &symbols, i - 1, i, &mut agenda, &mut rev_merge);
        }
        while let Some(top) = agenda.pop() {
            let (Some(l), Some(r)) = (
                symbols.get(top.left).copied(),
                symbols.get(top.right).copied(),
            ) else {
                continue;
            };
            if l.len == 0 || r.len == 0 || l.len + r.len != top.size {
                continue;
            }
            if let Some(s) = symbols.get_mut(top.left) {
                s.len += r.len;
                s.next = r.next;
            }
            if let Some(n) = r.next.and_then(|n| symbols.get_mut(n)) {
                n.prev = Some(top.left);
            }
            if let Some(s) = symbols.get_mut(top.right) {
                s.len = 0;
            }
            if let Some(p) = l.prev {
                self.maybe_add(text, &symbols, p, top.left, &mut agenda, &mut rev_merge);
            }
            if let Some(n) = r.next {
                self.maybe_add(text, &symbols, top.left, n, &mut agenda, &mut rev_merge);
            }
        }
        let mut index = Some(0);
        while let Some(i) = index {
            let Some(s) = symbols.get(i) else { break };
            self.resegment(text, (s.start, s.start + s.len), &rev_merge, out, 0);
            index = s.next;
        }
    }

    fn initial_symbols(&self, text: &[u8]) -> Vec<Symbol> {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        let mut pos = 0;
        while pos < text.len() {
            let rest = text.get(pos..).unwrap_or_default();
            let (len, freeze) = match self.user_defined.longest_prefix(rest) {
                Some((len, _)) => (len, true),
                None => (
                    char_len(rest.first().copied().unwrap_or(0)).min(rest.len()),
                    false,
                ),
            };
            let index = symbols.len();
            symbols.push(Symbol {
                prev: index.checked_sub(1),
                next: None,
                freeze,
                start: pos,
                len,
            });
            pos += len.max(1);
            if pos < text.len() {
                if let Some(s) = symbols.last_mut() {
                    s.next = Some(index + 1);
                }
            }
        }
        symbols
    }

    fn maybe_add<'a>(
        &self,
        text: &'a [u8],
        symbols: &[Symbol],
        left: usize,
        right: usize,
        agenda: &mut BinaryHeap<Candidate>,
        rev_merge: &mut RevMerge<'a>,
    ) {
        let (Some(l), Some(r)) = (symbols.get(left), symbols.get(right)) else {
            return;
        };
        if l.freeze || r.freeze {
            return;
        }
        let size = l.len + r.len;
        let Some(piece) = text.get(l.start..l.start + size) else {
            return;
        };
        let Some(id) = self.trie.get(piece) else {
            return;
        };
        agenda.push(Candidate {
            left,
            right,
            score: self.scores.get(id as usize).copied().unwrap_or(0.0),
            size,
        });
        if self.kinds.get(id as usize) == Some(&KIND_UNUSED) {
            rev_merge.insert(piece, l.len);
        }
    }

    /// Emits `range`, splitting UNUSED pieces back into the pieces they were merged from.
    fn resegment(
        &self,
        text: &[u8],
        range: (usize, usize),
        rev_merge: &RevMerge<'_>,
        out: &mut Vec<(usize, usize, Option<u32>)>,
        depth: usize,
    ) {
        let (start, end) = range;
        let id = text.get(start..end).and_then(|p| self.trie.get(p));
        let unused = id.is_some_and(|i| self.kinds.get(i as usize) == Some(&KIND_UNUSED));
        if unused && depth < 64 {
            let split = text.get(start..end).and_then(|p| rev_merge.get(p));
            if let Some(&left_len) = split.filter(|&&l| l > 0 && start + l < end) {
                self.resegment(text, (start, start + left_len), rev_merge, out, depth + 1);
                self.resegment(text, (start + left_len, end), rev_merge, out, depth + 1);
                return;
            }
        }
        out.push((start, end, id));
    }
}
