//! Small text helpers: byte→character offsets, lower-casing with an offset map, the
//! punctuation test of `tokenization_deberta_v2.py`, and `clean_up_tokenization`.

use unicode_categories::UnicodeCategories;

/// Maps byte offsets of a string to character (code point) offsets, as Python counts them.
#[derive(Debug, Clone)]
pub struct CharIndex {
    /// `None` for ASCII text, where byte and character offsets coincide.
    table: Option<Vec<u32>>,
    len: usize,
}

impl CharIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        if text.is_ascii() {
            return CharIndex {
                table: None,
                len: text.len(),
            };
        }
        let mut table = vec![0u32; text.len() + 1];
        let mut n = 0u32;
        for (i, c) in text.char_indices() {
            for k in 0..c.len_utf8() {
                if let Some(slot) = table.get_mut(i + k) {
                    *slot = n;
                }
            }
            n += 1;
        }
        if let Some(last) = table.last_mut() {
            *last = n;
        }
        CharIndex {
            table: Some(table),
            len: text.len(),
        }
    }

    /// Character offset of byte offset `b` (clamped to the end).
    pub fn char_at(&self, b: usize) -> usize {
        let b = b.min(self.len);
        match &self.table {
            None => b,
            Some(t) => t.get(b).copied().unwrap_or(0) as usize,
        }
    }
}

/// A possibly lower-cased copy of a text with a map back to the original bytes.
#[derive(Debug, Clone)]
pub struct Lowered<'a> {
    original: &'a str,
    lowered: Option<String>,
    /// Per lowered byte: the original byte range of the character it came from.
    map: Vec<(usize, usize)>,
}

impl<'a> Lowered<'a> {
    /// No lower-casing.
    pub fn identity(text: &'a str) -> Self {
        Lowered {
            original: text,
            lowered: None,
            map: Vec::new(),
        }
    }

    /// transformers' `do_lower_case` step of `tokenize`: every character is lower-cased on its
    /// own, except inside occurrences of the special tokens.
    pub fn lower_except(text: &'a str, specials: &[(String, u32)]) -> Self {
        let mut lowered = String::with_capacity(text.len());
        let mut map = Vec::with_capacity(text.len());
        let mut pos = 0;
        while let Some(rest) = text.get(pos..).filter(|r| !r.is_empty()) {
            if let Some((s, _)) = specials
                .iter()
                .find(|(s, _)| !s.is_empty() && rest.starts_with(s.as_str()))
            {
                lowered.push_str(s);
                map.extend((pos..pos + s.len()).map(|b| (b, b + 1)));
                pos += s.len();
                continue;
            }
            let Some(c) = rest.chars().next() else { break };
            let end = pos + c.len_utf8();
            let before = lowered.len();
            if c == '\n' {
                lowered.push(c);
            } else {
                lowered.extend(c.to_lowercase());
            }
            map.extend(std::iter::repeat_n((pos, end), lowered.len() - before));
            pos = end;
        }
        Lowered {
            original: text,
            lowered: Some(lowered),
            map,
        }
    }

    /// The text to tokenize.
    pub fn text(&self) -> &str {
        self.lowered.as_deref().unwrap_or(self.original)
    }

    /// Character span in the original text of the lowered byte range `s..e`.
    pub fn char_span(&self, chars: &CharIndex, s: usize, e: usize) -> (usize, usize) {
        if self.lowered.is_none() {
            return (chars.char_at(s), chars.char_at(e));
        }
        let start = match self.map.get(s) {
            Some(&(o, _)) => o,
            None => self.original.len(),
        };
        let end = if e <= s {
            start
        } else {
            self.map.get(e - 1).map_or(self.original.len(), |&(_, o)| o)
        };
        (chars.char_at(start), chars.char_at(end))
    }
}

/// `_is_punctuation` of `tokenization_deberta_v2.py` (and tokenizers' `Punctuation`): ASCII
/// symbol ranges or a Unicode `P*` category.
pub fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// `PreTrainedTokenizerBase.clean_up_tokenization`.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_offsets() {
        let t = "aé😀b";
        let c = CharIndex::new(t);
        assert_eq!(c.char_at(0), 0);
        assert_eq!(c.char_at(3), 2);
        assert_eq!(c.char_at(t.len()), 4);
    }

    #[test]
    fn lowering_keeps_specials() {
        let specials = vec![("[MASK]".to_string(), 5)];
        let l = Lowered::lower_except("AB [MASK] İx", &specials);
        assert_eq!(l.text(), "ab [MASK] i\u{307}x");
        let c = CharIndex::new("AB [MASK] İx");
        assert_eq!(l.char_span(&c, 10, 13), (10, 11));
    }
}
