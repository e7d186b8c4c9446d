//! Byte tries: the darts-clone double array that sentencepiece serializes in its precompiled
//! charsmap (read-only), and a compact trie built at load time for vocabulary lookups.

use std::collections::VecDeque;

/// Read-only view of a darts-clone double array (`Darts::DoubleArray`), as stored in
/// `NormalizerSpec.precompiled_charsmap`.
///
/// Each 32-bit unit packs a label, a has-leaf flag and an offset; a leaf unit holds a value.
///
/// Ours rather than the `spm_precompiled` crate's (0.1.4, which `tokenizers` uses), because
/// that one does not give sentencepiece's results on every input: its
/// `DoubleArray::common_prefix_search` indexes the units unchecked (`self.array[node_pos]`),
/// so a malformed charsmap in an untrusted `spm.model` panics instead of failing; it stops
/// at a NUL byte where sentencepiece searches the whole input; and its
/// `Precompiled::transform` takes the first (shortest) match where `NormalizePrefix` takes
/// the longest, then slices the replacement blob unchecked. Its double array can only be
/// built inside `Precompiled`, so the walk cannot be borrowed alone.
#[derive(Debug, Clone, Default)]
pub struct DoubleArray {
    units: Vec<u32>,
}

impl DoubleArray {
    /// Wraps little-endian 32-bit units (trailing bytes that do not fill a unit are ignored).
    pub fn from_le_bytes(bytes: &[u8]) -> Self {
        let units = bytes
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes))
            .collect();
        DoubleArray { units }
    }

    fn offset(unit: u32) -> usize {
        ((unit >> 10) << ((unit & (1 << 9)) >> 6)) as usize
    }

    fn label(unit: u32) -> u32 {
        unit & ((1 << 31) | 0xff)
    }

    fn has_leaf(unit: u32) -> bool {
        (unit >> 8) & 1 == 1
    }

    fn value(unit: u32) -> u32 {
        unit & ((1 << 31) - 1)
    }

    /// Calls `found(length, value)` for every key that is a prefix of `key`, shortest first,
    /// stopping after `max_results` keys (sentencepiece uses 32). Malformed arrays end the walk
    /// instead of panicking.
    pub fn common_prefix_search(
        &self,
        key: &[u8],
        max_results: usize,
        mut found: impl FnMut(usize, u32),
    ) {
        let Some(&root) = self.units.first() else {
            return;
        };
        let mut node = Self::offset(root);
        let mut count = 0;
        for (i, &byte) in key.iter().enumerate() {
            node ^= usize::from(byte);
            let Some(&unit) = self.units.get(node) else {
                return;
            };
            if Self::label(unit) != u32::from(byte) {
                return;
            }
            node ^= Self::offset(unit);
            if Self::has_leaf(unit) {
                let Some(&leaf) = self.units.get(node) else {
                    return;
                };
                if count < max_results {
                    found(i + 1, Self::value(leaf));
                }
                count += 1;
            }
        }
    }
}

/// A byte trie over a fixed key set, mapping each key to a `u32` value.
///
/// Nodes with many children (the root, `▁`, ...) get a direct 256-entry table; the others keep
/// a short sorted edge list scanned linearly. Node records and edges are packed for locality.
#[derive(Debug, Clone, Default)]
pub struct ByteTrie {
    nodes: Vec<Node>,
    /// Edge labels of sparse nodes (scanned linearly, so kept apart from the targets).
    labels: Vec<u8>,
    /// Edge targets, parallel to `labels`.
    targets: Vec<u32>,
    /// 256-entry child tables of dense nodes (`NONE` = no child).
    dense: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Start in `labels`/`targets` (sparse) or `dense` (dense).
    start: u32,
    /// Number of edges; `u16::MAX` marks a dense node.
    len: u16,
    /// Value of the key ending here, or `NONE`.
    value: u32,
    /// Float stored with the value (see [`ByteTrie::with_aux`]).
    aux: f32,
}

const NONE: u32 = u32::MAX;
const DENSE: u16 = u16::MAX;
/// Nodes with more children than this get a direct table.
const DENSE_MIN: usize = 48;

impl ByteTrie {
    /// Builds a trie from `(key, value)` pairs; a repeated key keeps the first value. Empty keys
    /// are ignored.
    pub fn new<'a>(keys: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        Self::with_aux(keys.into_iter().map(|(k, v)| (k, v, 0.0)))
    }

    /// Like [`ByteTrie::new`], also storing a float (a piece score) next to each value so a
    /// search needs no second random memory access.
    ///
    /// The keys are sorted once; every node is then a range of keys sharing a prefix, and nodes
    /// are numbered breadth-first so the busy top levels of the trie share cache lines.
    pub fn with_aux<'a>(keys: impl IntoIterator<Item = (&'a str, u32, f32)>) -> Self {
        let mut entries: Vec<(&[u8], u32, f32)> = keys
            .into_iter()
            .filter(|(k, ..)| !k.is_empty())
            .map(|(k, v, a)| (k.as_bytes(), v, a))
            .collect();
        // Stable sort + dedup keeps the first value of a repeated key.
        entries.sort_by(|x, y| x.0.cmp(y.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut trie = ByteTrie::default();
        let mut queue = VecDeque::from([(0usize, entries.len(), 0usize)]);
        let mut next_id = 1u32;
        let mut children: Vec<(u8, u32)> = Vec::new();
        while let Some((lo, hi, depth)) = queue.pop_front() {
            let mut node = Node {
                start: 0,
                len: 0,
                value: NONE,
                aux: 0.0,
            };
            let mut i = lo;
            if let Some(&(_, value, aux)) = entries.get(lo).filter(|e| e.0.len() == depth) {
                node.value = value;
                node.aux = aux;
                i += 1;
            }
            children.clear();
            while i < hi {
                let label = entries
                    .get(i)
                    .and_then(|e| e.0.get(depth))
                    .copied()
                    .unwrap_or(0);
                let mut j = i + 1;
                while j < hi && entries.get(j).and_then(|e| e.0.get(depth)) == Some(&label) {
                    j += 1;
                }
                children.push((label, next_id));
                next_id += 1;
                queue.push_back((i, j, depth + 1));
                i = j;
            }
            trie.push_node(node, &children);
        }
        trie
    }

    fn push_node(&mut self, mut node: Node, children: &[(u8, u32)]) {
        if children.len() > DENSE_MIN {
            let start = self.dense.len();
            self.dense.resize(start + 256, NONE);
            for &(label, target) in children {
                if let Some(slot) = self.dense.get_mut(start + usize::from(label)) {
                    *slot = target;
                }
            }
            node.start = start as u32;
            node.len = DENSE;
        } else {
            node.start = self.labels.len() as u32;
            node.len = children.len() as u16;
            self.labels.extend(children.iter().map(|c| c.0));
            self.targets.extend(children.iter().map(|c| c.1));
        }
        self.nodes.push(node);
    }

    /// Follows the edge labelled `byte` from `node`.
    #[inline]
    fn step(&self, node: &Node, byte: u8) -> Option<u32> {
        let start = node.start as usize;
        if node.len == DENSE {
            let t = *self.dense.get(start + usize::from(byte))?;
            return (t != NONE).then_some(t);
        }
        let labels = self.labels.get(start..start + usize::from(node.len))?;
        let pos = labels.iter().position(|&l| l == byte)?;
        self.targets.get(start + pos).copied()
    }

    /// Calls `found(length, value)` for every key that is a prefix of `text`, shortest first.
    #[inline]
    pub fn common_prefixes(&self, text: &[u8], mut found: impl FnMut(usize, u32)) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        for (i, &b) in text.iter().enumerate() {
            match self.step(node, b).and_then(|n| self.nodes.get(n as usize)) {
                Some(next) => node = next,
                None => return,
            }
            if node.value != NONE {
                found(i + 1, node.value);
            }
        }
    }

    /// Like [`ByteTrie::common_prefixes`], also passing the float stored with each value.
    #[inline]
    pub fn common_prefixes_aux(&self, text: &[u8], mut found: impl FnMut(usize, u32, f32)) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        for (i, &b) in text.iter().enumerate() {
            match self.step(node, b).and_then(|n| self.nodes.get(n as usize)) {
                Some(next) => node = next,
                None => return,
            }
            if node.value != NONE {
                found(i + 1, node.value, node.aux);
            }
        }
    }

    /// Length and value of the longest key that is a prefix of `text`.
    pub fn longest_prefix(&self, text: &[u8]) -> Option<(usize, u32)> {
        let mut best = None;
        self.common_prefixes(text, |len, v| best = Some((len, v)));
        best
    }

    /// Exact lookup.
    pub fn get(&self, key: &[u8]) -> Option<u32> {
        let mut node = self.nodes.first()?;
        for &b in key {
            node = self.nodes.get(self.step(node, b)? as usize)?;
        }
        (!key.is_empty() && node.value != NONE).then_some(node.value)
    }

    /// True when the trie holds no key.
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|n| n.value == NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let t = ByteTrie::new([("a", 1), ("ab", 2), ("abc", 3), ("b", 4)]);
        let mut got = vec![];
        t.common_prefixes(b"abd", |l, v| got.push((l, v)));
        assert_eq!(got, vec![(1, 1), (2, 2)]);
        assert_eq!(t.longest_prefix(b"abcd"), Some((3, 3)));
        assert_eq!(t.get(b"ab"), Some(2));
        assert_eq!(t.get(b"c"), None);
        assert!(ByteTrie::new([]).is_empty());
    }
}
