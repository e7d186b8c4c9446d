//! Splitting text on added tokens before sentencepiece, as transformers' slow tokenizers do
//! (`Trie.split` then the lstrip/rstrip/single_word adjustments of `PreTrainedTokenizer.tokenize`).

use crate::config::AddedToken;
use crate::spm::trie::ByteTrie;

/// One piece of the split input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Plain text to give to sentencepiece: byte range in the input.
    Text(usize, usize),
    /// An added token: index into the added-token list, and its byte range.
    Added(usize, usize, usize),
}

/// The added tokens of a slow tokenizer.
#[derive(Debug, Clone, Default)]
pub struct AddedVocab {
    tokens: Vec<AddedToken>,
    trie: ByteTrie,
}

/// Python's `str.isspace` for one character.
pub fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

impl AddedVocab {
    /// Indexes `tokens`.
    pub fn new(tokens: Vec<AddedToken>) -> Self {
        let trie = ByteTrie::new(
            tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.content.as_str(), i as u32)),
        );
        AddedVocab { tokens, trie }
    }

    /// The tokens, in id order.
    pub fn tokens(&self) -> &[AddedToken] {
        &self.tokens
    }

    /// The added token with this exact content.
    pub fn get(&self, content: &str) -> Option<&AddedToken> {
        let i = self.trie.get(content.as_bytes())?;
        self.tokens.get(i as usize)
    }

    /// The added token with this id.
    pub fn by_id(&self, id: u32) -> Option<&AddedToken> {
        self.tokens.iter().find(|t| t.id == id)
    }

    /// Splits `text` into text and added-token chunks (leftmost, then longest match), then
    /// applies each token's `rstrip` / `lstrip` to the neighbouring text chunks. Empty text
    /// chunks are dropped.
    pub fn split(&self, text: &str) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let bytes = text.as_bytes();
        let mut pos = 0;
        let mut text_start = 0;
        while pos < bytes.len() {
            let hit = bytes
                .get(pos..)
                .and_then(|rest| self.trie.longest_prefix(rest));
            match hit {
                Some((len, idx)) if text.is_char_boundary(pos) => {
                    if text_start < pos {
                        chunks.push(Chunk::Text(text_start, pos));
                    }
                    chunks.push(Chunk::Added(idx as usize, pos, pos + len));
                    pos += len;
                    text_start = pos;
                }
                _ => pos += 1,
            }
        }
        if text_start < bytes.len() {
            chunks.push(Chunk::Text(text_start, bytes.len()));
        }
        self.apply_strips(text, &mut chunks);
        self.apply_single_word(text, &mut chunks);
        chunks.retain(|c| !matches!(c, Chunk::Text(s, e) if s >= e));
        chunks
    }

    fn apply_strips(&self, text: &str, chunks: &mut [Chunk]) {
        for i in 0..chunks.len() {
            let Some(Chunk::Added(idx, _, _)) = chunks.get(i).cloned() else {
                continue;
            };
            let Some(tok) = self.tokens.get(idx) else {
                continue;
            };
            if tok.rstrip {
                if let Some(Chunk::Text(s, e)) = chunks.get_mut(i + 1) {
                    let t = text.get(*s..*e).unwrap_or("");
                    *s += t.len() - t.trim_start_matches(py_is_space).len();
                }
            }
            if tok.lstrip && i > 0 {
                if let Some(Chunk::Text(s, e)) = chunks.get_mut(i - 1) {
                    let t = text.get(*s..*e).unwrap_or("");
                    *e -= t.len() - t.trim_end_matches(py_is_space).len();
                }
            }
        }
    }
}

impl AddedVocab {
    /// `single_word` tokens glued to a neighbouring word are put back into that text (left
    /// neighbour first), as `PreTrainedTokenizer.tokenize` does.
    fn apply_single_word(&self, text: &str, chunks: &mut [Chunk]) {
        let span = |c: &Chunk| match *c {
            Chunk::Text(s, e) | Chunk::Added(_, s, e) => (s, e),
        };
        for i in 0..chunks.len() {
            let Some(Chunk::Added(idx, s, e)) = chunks.get(i).cloned() else {
                continue;
            };
            if !self.tokens.get(idx).is_some_and(|t| t.single_word) {
                continue;
            }
            let left = i.checked_sub(1).and_then(|j| chunks.get(j)).map(span);
            let right = chunks.get(i + 1).map(span);
            let left_glued =
                left.filter(|&(ls, le)| ls < le && !text.get(ls..le).unwrap_or("").ends_with(' '));
            let right_glued = right
                .filter(|&(rs, re)| rs < re && !text.get(rs..re).unwrap_or("").starts_with(' '));
            let (merged, at, emptied) = match (left_glued, right_glued) {
                (Some((ls, _)), _) => (Chunk::Text(ls, e), i - 1, Chunk::Text(e, e)),
                (None, Some((_, re))) => (Chunk::Text(s, re), i + 1, Chunk::Text(s, s)),
                (None, None) => continue,
            };
            if let Some(c) = chunks.get_mut(at) {
                *c = merged;
            }
            if let Some(c) = chunks.get_mut(i) {
                *c = emptied;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(content: &str, id: u32) -> AddedToken {
        AddedToken {
            content: content.into(),
            id,
            special: true,
            lstrip: false,
            rstrip: false,
            single_word: false,
            normalized: false,
        }
    }

    #[test]
    fn single_word_tokens_only_match_alone() {
        let mut t = tok("ab", 7);
        t.single_word = true;
        let v = AddedVocab::new(vec![t]);
        assert_eq!(
            v.split("x ab y"),
            vec![Chunk::Text(0, 2), Chunk::Added(0, 2, 4), Chunk::Text(4, 6)]
        );
        assert_eq!(v.split("xab y"), vec![Chunk::Text(0, 3), Chunk::Text(3, 5)]);
        assert_eq!(v.split("abc"), vec![Chunk::Text(0, 3)]);
    }

    #[test]
    fn split_longest() {
        let v = AddedVocab::new(vec![tok("[MASK]", 5), tok("[MA", 6)]);
        let c = v.split("a [MASK] b[MA");
        assert_eq!(
            c,
            vec![
                Chunk::Text(0, 2),
                Chunk::Added(0, 2, 8),
                Chunk::Text(8, 10),
                Chunk::Added(1, 10, 13)
            ]
        );
    }
}
