//! The sentencepiece normaliser: precompiled charsmap rules, dummy prefix, whitespace cleanup
//! and `' '` → `▁` escaping, with a map from normalised bytes back to input bytes.
//!
//! Mirrors `Normalizer::Normalize` / `NormalizePrefix` in sentencepiece's `normalizer.cc`.

use super::model::NormalizerSpec;
use super::trie::{ByteTrie, DoubleArray};
use crate::error::{Error, Result};

/// The word-boundary marker U+2581.
pub const SPACE_SYMBOL: &str = "\u{2581}";

/// sentencepiece reads at most this many trie hits per position.
const MAX_TRIE_RESULTS: usize = 32;

/// A normalised string plus, for each of its bytes (and one past the end), the input byte
/// offset it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalized {
    /// Normalised text.
    pub text: String,
    /// `norm_to_orig[i]` = input byte offset of normalised byte `i`; length `text.len() + 1`.
    pub norm_to_orig: Vec<usize>,
}

/// Compiled normaliser for one `NormalizerSpec`.
#[derive(Debug, Clone)]
pub struct Normalizer {
    trie: Option<DoubleArray>,
    replacements: Vec<u8>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
    treat_whitespace_as_suffix: bool,
    /// User-defined pieces, which bypass normalisation.
    user_defined: ByteTrie,
    has_user_defined: bool,
}

impl Normalizer {
    /// Compiles `spec`. `user_defined` holds the model's `USER_DEFINED` pieces.
    pub fn new(
        spec: &NormalizerSpec,
        treat_whitespace_as_suffix: bool,
        user_defined: ByteTrie,
    ) -> Result<Self> {
        let (trie, replacements) = if spec.precompiled_charsmap.is_empty() {
            (None, Vec::new())
        } else {
            let (t, r) = split_charsmap(&spec.precompiled_charsmap)?;
            (Some(t), r)
        };
        Ok(Normalizer {
            trie,
            replacements,
            add_dummy_prefix: spec.add_dummy_prefix,
            remove_extra_whitespaces: spec.remove_extra_whitespaces,
            escape_whitespaces: spec.escape_whitespaces,
            treat_whitespace_as_suffix,
            has_user_defined: !user_defined.is_empty(),
            user_defined,
        })
    }

    /// Returns the replacement for the longest rule at the start of `input` and the number of
    /// input bytes it consumes (`input` must be non-empty).
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> (&'a str, usize) {
        let bytes = input.as_bytes();
        if self.has_user_defined {
            if let Some((len, _)) = self.user_defined.longest_prefix(bytes) {
                if let Some(s) = input.get(..len) {
                    return (s, len);
                }
            }
        }
        if let Some(trie) = &self.trie {
            let mut best: Option<(usize, u32)> = None;
            trie.common_prefix_search(bytes, MAX_TRIE_RESULTS, |len, value| {
                if best.is_none_or(|(l, _)| len > l) {
                    best = Some((len, value));
                }
            });
            if let Some((len, value)) = best {
                if let Some(rep) = self.replacement(value as usize) {
                    if input.is_char_boundary(len) {
                        return (rep, len);
                    }
                }
            }
        }
        let len = input.chars().next().map_or(1, char::len_utf8);
        (input.get(..len).unwrap_or(""), len)
    }

    /// The NUL-terminated replacement string at `offset`, if it is valid UTF-8.
    fn replacement(&self, offset: usize) -> Option<&str> {
        let rest = self.replacements.get(offset..)?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(rest.get(..end)?).ok()
    }

    /// Normalises `input` as sentencepiece does.
    pub fn normalize(&self, input: &str) -> Normalized {
        let mut out = Normalized::default();
        if input.is_empty() {
            out.norm_to_orig.push(0);
            return out;
        }
        let mut rest = input;
        let mut consumed = 0usize;
        if self.remove_extra_whitespaces {
            while !rest.is_empty() {
                let (rep, len) = self.normalize_prefix(rest);
                if rep != " " {
                    break;
                }
                rest = rest.get(len..).unwrap_or("");
                consumed += len;
            }
        }
        if rest.is_empty() {
            out.norm_to_orig.push(consumed);
            return out;
        }
        out.text.reserve(rest.len() + 8);
        out.norm_to_orig.reserve(rest.len() + 8);
        if !self.treat_whitespace_as_suffix && self.add_dummy_prefix {
            self.push_space(&mut out, consumed);
        }
        self.normalize_body(rest, consumed, &mut out);
        Self::check(&out);
        out
    }

    fn normalize_body(&self, mut rest: &str, mut consumed: usize, out: &mut Normalized) {
        let mut is_prev_space = self.remove_extra_whitespaces;
        while !rest.is_empty() {
            let (mut piece, len) = self.normalize_prefix(rest);
            if is_prev_space {
                piece = piece.trim_start_matches(' ');
            }
            if !piece.is_empty() {
                for ch in piece.chars() {
                    if self.escape_whitespaces && ch == ' ' {
                        self.push_space(out, consumed);
                    } else {
                        out.text.push(ch);
                        out.norm_to_orig
                            .extend(std::iter::repeat_n(consumed, ch.len_utf8()));
                    }
                }
                is_prev_space = piece.ends_with(' ');
            }
            consumed += len;
            rest = rest.get(len..).unwrap_or("");
            if !self.remove_extra_whitespaces {
                is_prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            let space = if self.escape_whitespaces {
                SPACE_SYMBOL
            } else {
                " "
            };
            while out.text.ends_with(space) {
                let length = out.text.len() - space.len();
                consumed = out.norm_to_orig.get(length).copied().unwrap_or(consumed);
                out.text.truncate(length);
                out.norm_to_orig.truncate(length);
            }
        }
        if self.treat_whitespace_as_suffix && self.add_dummy_prefix {
            self.push_space(out, consumed);
        }
        out.norm_to_orig.push(consumed);
    }

    fn push_space(&self, out: &mut Normalized, consumed: usize) {
        let s = if self.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            " "
        };
        out.text.push_str(s);
        out.norm_to_orig
            .extend(std::iter::repeat_n(consumed, s.len()));
    }

    fn check(out: &Normalized) {
        debug_assert_eq!(out.norm_to_orig.len(), out.text.len() + 1);
    }
}

/// Splits a precompiled charsmap into its double array and its replacement-string blob.
fn split_charsmap(blob: &[u8]) -> Result<(DoubleArray, Vec<u8>)> {
    let head: [u8; 4] = blob
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| Error::Charsmap("shorter than its 4-byte header".into()))?;
    let trie_size = u32::from_le_bytes(head) as usize;
    let rest = blob.get(4..).unwrap_or_default();
    if trie_size > rest.len() {
        return Err(Error::Charsmap(format!(
            "trie size {trie_size} exceeds the blob size {}",
            blob.len()
        )));
    }
    let (trie, strings) = rest.split_at(trie_size);
    Ok((DoubleArray::from_le_bytes(trie), strings.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(add_dummy_prefix: bool, remove_extra: bool) -> Normalizer {
        let spec = NormalizerSpec {
            add_dummy_prefix,
            remove_extra_whitespaces: remove_extra,
            ..Default::default()
        };
        Normalizer::new(&spec, false, ByteTrie::default()).unwrap()
    }

    #[test]
    fn whitespace_rules() {
        let n = plain(true, true);
        let out = n.normalize("  a  b ");
        assert_eq!(out.text, "▁a▁b");
        assert_eq!(out.norm_to_orig.len(), out.text.len() + 1);
        assert_eq!(out.norm_to_orig[0], 2);
        assert_eq!(*out.norm_to_orig.last().unwrap(), 6);
        assert_eq!(n.normalize("   ").text, "");
        let n = plain(false, false);
        assert_eq!(n.normalize(" a  b").text, "▁a▁▁b");
    }

    #[test]
    fn bad_charsmap() {
        let spec = NormalizerSpec {
            precompiled_charsmap: vec![9, 0, 0, 0, 1],
            ..Default::default()
        };
        assert!(Normalizer::new(&spec, false, ByteTrie::default()).is_err());
    }
}
