//! A pure-Rust `SentencePieceProcessor`: load `spm.model`, encode text into pieces with input
//! offsets (normaliser + unigram/BPE + unknown merging + byte fallback) and decode pieces.
//!
//! Mirrors `SentencePieceProcessor::Encode` / `Decode` in sentencepiece 0.2.x, one stage per
//! module:
//!
//! | stage | module |
//! |---|---|
//! | the `spm.model` protobuf (`ModelProto`) | [`model`] |
//! | normalisation (precompiled charsmap, whitespace, `▁`) | `normalizer` |
//! | byte tries (the charsmap's darts double array, vocabulary lookups) | `trie` |
//! | unigram Viterbi segmentation | `unigram` |
//! | BPE merges | `bpe` |
//! | unknown merging, byte fallback, decoding | this module |

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

mod bpe;
pub mod model;
mod normalizer;
pub(crate) mod trie;
mod unigram;

use crate::error::{Error, Result};
use bpe::BpeModel;
use model::{ModelProto, ModelType, PieceType};
use normalizer::Normalizer;
pub(crate) use normalizer::SPACE_SYMBOL;
use trie::ByteTrie;
use unigram::{UnigramModel, KIND_NORMAL, KIND_UNUSED, KIND_USER};

/// One encoded piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpmPiece<'a> {
    /// Vocabulary id (the unknown id for unknown text).
    pub id: u32,
    /// The piece string, as `encode(out_type=str)` returns it: the vocabulary piece, or the
    /// normalised surface for (merged) unknown text.
    pub piece: Cow<'a, str>,
    /// Input byte offset where the piece starts.
    pub begin: usize,
    /// Input byte offset where the piece ends (equal to `begin` for all but the last byte
    /// piece of a byte-fallback character).
    pub end: usize,
}

#[derive(Debug, Clone)]
enum Segmenter {
    Unigram(UnigramModel),
    Bpe(BpeModel),
}

/// A loaded sentencepiece model.
#[derive(Debug, Clone)]
pub struct SentencePiece {
    proto: ModelProto,
    raw: Vec<u8>,
    normalizer: Normalizer,
    segmenter: Segmenter,
    /// CONTROL, UNKNOWN and BYTE pieces → id (`reserved_id_map_`).
    reserved: HashMap<String, u32>,
    /// NORMAL, USER_DEFINED and UNUSED pieces → id.
    normal: ByteTrie,
    unk_id: u32,
    byte_ids: Vec<Option<u32>>,
}

impl SentencePiece {
    /// Loads `spm.model` from disk.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(raw)
    }

    /// Parses a serialized `ModelProto`.
    pub fn from_bytes(raw: Vec<u8>) -> Result<Self> {
        let proto = ModelProto::parse(&raw)?;
        let (reserved, kinds, unk_id) = classify_pieces(&proto)?;
        let normal = ByteTrie::with_aux(
            proto
                .pieces
                .iter()
                .enumerate()
                .filter(|(i, _)| kinds.get(*i).is_some_and(|k| *k <= KIND_UNUSED))
                .map(|(i, p)| (p.piece.as_str(), i as u32, p.score)),
        );
        let user_defined = ByteTrie::new(
            proto
                .pieces
                .iter()
                .enumerate()
                .filter(|(_, p)| p.kind == PieceType::UserDefined)
                .map(|(i, p)| (p.piece.as_str(), i as u32)),
        );
        let normalizer = Normalizer::new(
            &proto.normalizer_spec,
            proto.trainer_spec.treat_whitespace_as_suffix,
            user_defined.clone(),
        )?;
        let segmenter = build_segmenter(&proto, &normal, user_defined, kinds, unk_id)?;
        let byte_ids = (0..=255u8)
            .map(|b| reserved.get(&byte_piece(b)).copied())
            .collect();
        Ok(SentencePiece {
            proto,
            raw,
            normalizer,
            segmenter,
            reserved,
            normal,
            unk_id,
            byte_ids,
        })
    }

    /// The parsed model.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// The serialized model, byte-for-byte as loaded.
    pub fn serialized(&self) -> &[u8] {
        &self.raw
    }

    /// Number of pieces (`GetPieceSize`).
    pub fn len(&self) -> usize {
        self.proto.pieces.len()
    }

    /// True for an empty vocabulary (never the case for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.proto.pieces.is_empty()
    }

    /// The unknown piece id.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// `PieceToId`: reserved pieces first, then ordinary pieces, else the unknown id.
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        if let Some(&id) = self.reserved.get(piece) {
            return id;
        }
        self.normal.get(piece.as_bytes()).unwrap_or(self.unk_id)
    }

    /// `IdToPiece`, or `None` out of range.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.proto.pieces.get(id as usize).map(|p| p.piece.as_str())
    }

    /// The type of piece `id`.
    pub fn piece_type(&self, id: u32) -> Option<PieceType> {
        self.proto.pieces.get(id as usize).map(|p| p.kind)
    }

    /// Encodes `text` (`encode(text, out_type=str)` plus ids and input byte offsets).
    pub fn encode(&self, text: &str) -> Vec<SpmPiece<'_>> {
        let normalized = self.normalizer.normalize(text);
        let mut ranges: Vec<(usize, usize, u32)> = Vec::new();
        match &self.segmenter {
            Segmenter::Unigram(m) => m.encode(&normalized.text, &mut ranges),
            Segmenter::Bpe(m) => {
                let mut raw = Vec::new();
                m.encode(&normalized.text, &mut raw);
                ranges.extend(raw.into_iter().map(|(s, e, id)| {
                    let id = id.unwrap_or_else(|| {
                        self.piece_to_id(normalized.text.get(s..e).unwrap_or(""))
                    });
                    (s, e, id)
                }));
            }
        }
        self.assemble(&normalized.text, &normalized.norm_to_orig, &ranges)
    }

    /// Turns segment ranges into pieces: merges runs of unknown pieces, or expands them into
    /// byte pieces when the model has byte fallback.
    fn assemble(
        &self,
        norm: &str,
        n2o: &[usize],
        ranges: &[(usize, usize, u32)],
    ) -> Vec<SpmPiece<'_>> {
        let mut out: Vec<SpmPiece<'_>> = Vec::with_capacity(ranges.len());
        let byte_fallback = self.proto.trainer_spec.byte_fallback;
        let mut prev_unk = false;
        for &(s, e, id) in ranges {
            let surface = norm.get(s..e).unwrap_or("");
            let is_unk = id == self.unk_id;
            if self.piece_type(id) == Some(PieceType::Control) {
                let at = n2o.get(s).copied().unwrap_or(0);
                out.push(self.vocab_piece(id, at, at));
                prev_unk = is_unk;
                continue;
            }
            let begin = n2o.get(s).copied().unwrap_or(0);
            let end = n2o.get(e).copied().unwrap_or(begin);
            if is_unk && byte_fallback {
                self.push_bytes(surface, begin, end, &mut out);
            } else if is_unk && prev_unk {
                if let Some(last) = out.last_mut() {
                    last.piece.to_mut().push_str(surface);
                    last.end = end;
                }
            } else if is_unk {
                out.push(SpmPiece {
                    id,
                    piece: Cow::Owned(surface.to_string()),
                    begin,
                    end,
                });
            } else {
                out.push(self.vocab_piece(id, begin, end));
            }
            prev_unk = is_unk;
        }
        out
    }

    fn vocab_piece(&self, id: u32, begin: usize, end: usize) -> SpmPiece<'_> {
        SpmPiece {
            id,
            piece: Cow::Borrowed(self.id_to_piece(id).unwrap_or("")),
            begin,
            end,
        }
    }

    fn push_bytes<'a>(
        &'a self,
        surface: &str,
        begin: usize,
        end: usize,
        out: &mut Vec<SpmPiece<'a>>,
    ) {
        let n = surface.len();
        for (i, b) in surface.bytes().enumerate() {
            let byte_id = self.byte_ids.get(usize::from(b)).copied().flatten();
            let (id, piece) = match byte_id.and_then(|id| Some((id, self.id_to_piece(id)?))) {
                Some((id, p)) => (id, Cow::Borrowed(p)),
                None => (self.unk_id, Cow::Owned(byte_piece(b))),
            };
            let last = i + 1 == n;
            out.push(SpmPiece {
                id,
                piece,
                begin,
                end: if last { end } else { begin },
            });
        }
    }

    /// `decode_pieces`: joins pieces into text (byte pieces are reassembled into UTF-8, `▁`
    /// becomes a space, the leading space of the first word is dropped).
    pub fn decode_pieces<S: AsRef<str>>(&self, pieces: &[S]) -> String {
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for p in pieces {
            let piece = p.as_ref();
            let id = self.piece_to_id(piece);
            if self.piece_type(id) == Some(PieceType::Byte) {
                if let Some(b) = parse_byte_piece(piece) {
                    bytes.push(b);
                }
                continue;
            }
            flush_bytes(&mut bytes, &mut text);
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            let (decoded, seen) = self.decode_piece(piece, id, is_bos_ws);
            bos_ws_seen = seen;
            text.push_str(&decoded);
        }
        flush_bytes(&mut bytes, &mut text);
        text
    }

    /// `DecodeSentencePiece` for one non-byte piece; returns the text and whether a leading
    /// `▁` was consumed as the dummy prefix.
    fn decode_piece(&self, piece: &str, id: u32, is_bos_ws: bool) -> (String, bool) {
        match self.piece_type(id) {
            Some(PieceType::Control) => return (String::new(), false),
            Some(PieceType::Unknown) => {
                if self.id_to_piece(id) == Some(piece) {
                    return (self.proto.trainer_spec.unk_surface.clone(), false);
                }
                return (piece.to_string(), false);
            }
            _ => {}
        }
        let spec = &self.proto.normalizer_spec;
        let mut rest = piece;
        let mut has_bos_ws = false;
        if is_bos_ws && (spec.add_dummy_prefix || spec.remove_extra_whitespaces) {
            if let Some(r) = rest.strip_prefix(SPACE_SYMBOL) {
                rest = r;
                has_bos_ws = !spec.remove_extra_whitespaces;
            }
        }
        (rest.replace(SPACE_SYMBOL, " "), has_bos_ws)
    }
}

/// Appends accumulated byte pieces as UTF-8, each invalid byte becoming U+FFFD.
fn flush_bytes(bytes: &mut Vec<u8>, text: &mut String) {
    let mut rest: &[u8] = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                text.push_str(s);
                break;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                text.push_str(
                    std::str::from_utf8(rest.get(..valid).unwrap_or_default()).unwrap_or(""),
                );
                // sentencepiece replaces each structurally invalid byte on its own.
                text.push('\u{FFFD}');
                rest = rest.get(valid + 1..).unwrap_or_default();
            }
        }
    }
    bytes.clear();
}

/// The byte piece text `<0xNN>`.
pub fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

type Classified = (HashMap<String, u32>, Vec<u8>, u32);

/// sentencepiece refuses a vocabulary with a repeated piece.
fn check_unique(proto: &ModelProto) -> Result<()> {
    let mut sorted: Vec<&str> = proto.pieces.iter().map(|p| p.piece.as_str()).collect();
    sorted.sort_unstable();
    match sorted.windows(2).find(|w| w.first() == w.last()) {
        Some(w) => Err(Error::SpmModel(format!(
            "piece {:?} is defined twice",
            w.first().copied().unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// Splits pieces into the reserved map and per-id kind codes; checks sentencepiece's load-time
/// invariants (non-empty unique pieces, exactly one `<unk>`, byte pieces only with fallback).
fn classify_pieces(proto: &ModelProto) -> Result<Classified> {
    let mut reserved = HashMap::new();
    check_unique(proto)?;
    let mut kinds = Vec::with_capacity(proto.pieces.len());
    let mut unk_id = None;
    for (i, p) in proto.pieces.iter().enumerate() {
        let id = u32::try_from(i).map_err(|_| Error::SpmModel("too many pieces".into()))?;
        if p.piece.is_empty() {
            return Err(Error::SpmModel(format!("piece {i} is empty")));
        }
        let kind = match p.kind {
            PieceType::Normal => KIND_NORMAL,
            PieceType::UserDefined => KIND_USER,
            PieceType::Unused => KIND_UNUSED,
            PieceType::Unknown | PieceType::Control | PieceType::Byte => {
                reserved.insert(p.piece.clone(), id);
                u8::MAX
            }
        };
        if p.kind == PieceType::Unknown && unk_id.replace(id).is_some() {
            return Err(Error::SpmModel("more than one unknown piece".into()));
        }
        if p.kind == PieceType::Byte && !proto.trainer_spec.byte_fallback {
            return Err(Error::SpmModel(format!(
                "byte piece {:?} found although trainer_spec.byte_fallback is false",
                p.piece
            )));
        }
        kinds.push(kind);
    }
    let unk_id = unk_id.ok_or_else(|| Error::SpmModel("no unknown (<unk>) piece".into()))?;
    Ok((reserved, kinds, unk_id))
}

fn build_segmenter(
    proto: &ModelProto,
    normal: &ByteTrie,
    user_defined: ByteTrie,
    kinds: Vec<u8>,
    unk_id: u32,
) -> Result<Segmenter> {
    match proto.trainer_spec.model_type {
        ModelType::Unigram => {
            let has_user = kinds.contains(&KIND_USER);
            let has_unused = kinds.contains(&KIND_UNUSED);
            let mut min_score = f32::MAX;
            let mut max_score = f32::MIN_POSITIVE;
            for p in proto.pieces.iter().filter(|p| p.kind == PieceType::Normal) {
                min_score = min_score.min(p.score);
                max_score = max_score.max(p.score);
            }
            Ok(Segmenter::Unigram(UnigramModel {
                trie: normal.clone(),
                has_user,
                has_unused,
                kinds,
                unk_id,
                min_score,
                max_score,
            }))
        }
        ModelType::Bpe => Ok(Segmenter::Bpe(BpeModel {
            trie: normal.clone(),
            user_defined,
            scores: proto.pieces.iter().map(|p| p.score).collect(),
            kinds,
        })),
        other => Err(Error::SpmModel(format!(
            "model_type {other:?} is not supported (only UNIGRAM and BPE)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(num: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    /// Serializes a model: pieces `(text, score, type)`, model type, add_dummy_prefix.
    fn model(pieces: &[(&str, f32, u64)], model_type: u64, dummy: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (text, score, kind) in pieces {
            let mut p = Vec::new();
            field(1, text.as_bytes(), &mut p);
            p.push(2 << 3 | 5);
            p.extend_from_slice(&score.to_le_bytes());
            p.push(3 << 3);
            varint(*kind, &mut p);
            field(1, &p, &mut out);
        }
        let trainer = [3 << 3, model_type as u8];
        field(2, &trainer, &mut out);
        let normalizer = [3 << 3, u8::from(dummy)];
        field(3, &normalizer, &mut out);
        out
    }

    fn pieces(spm: &SentencePiece, text: &str) -> Vec<String> {
        spm.encode(text)
            .into_iter()
            .map(|p| p.piece.into_owned())
            .collect()
    }

    #[test]
    fn unigram_never_emits_unused_pieces() {
        let bytes = model(
            &[
                ("<unk>", 0.0, 2),
                ("▁", -1.0, 1),
                ("a", -2.0, 1),
                ("b", -2.0, 1),
                ("▁ab", -0.1, 5),
                ("▁a", -1.5, 1),
            ],
            1,
            true,
        );
        let spm = SentencePiece::from_bytes(bytes).unwrap();
        assert_eq!(pieces(&spm, "ab"), ["▁a", "b"]);
        // Unknown characters are merged into one piece with the unknown id.
        let enc = spm.encode("axyb");
        assert_eq!(enc[1].piece, "xy");
        assert_eq!(enc[1].id, 0);
        assert_eq!((enc[1].begin, enc[1].end), (1, 3));
        assert_eq!(spm.decode_pieces(&pieces(&spm, "a b")), "a b");
    }

    #[test]
    fn bpe_resegments_unused_merges() {
        let bytes = model(
            &[
                ("<unk>", 0.0, 2),
                ("a", -5.0, 1),
                ("b", -5.0, 1),
                ("c", -5.0, 1),
                ("ab", -1.0, 5),
                ("abc", -2.0, 1),
            ],
            2,
            false,
        );
        let spm = SentencePiece::from_bytes(bytes).unwrap();
        assert_eq!(pieces(&spm, "abc"), ["abc"]);
        assert_eq!(pieces(&spm, "abab"), ["a", "b", "a", "b"]);
        let enc = spm.encode("abd");
        assert_eq!(enc.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2, 0]);
    }

    #[test]
    fn invalid_models_are_rejected() {
        let dup = model(&[("<unk>", 0.0, 2), ("a", 0.0, 1), ("a", 0.0, 1)], 1, true);
        assert!(matches!(
            SentencePiece::from_bytes(dup),
            Err(Error::SpmModel(_))
        ));
        let no_unk = model(&[("a", 0.0, 1)], 1, true);
        assert!(SentencePiece::from_bytes(no_unk).is_err());
        let bytes_without_fallback = model(&[("<unk>", 0.0, 2), ("<0x41>", 0.0, 6)], 1, true);
        assert!(SentencePiece::from_bytes(bytes_without_fallback).is_err());
        let word = model(&[("<unk>", 0.0, 2)], 3, true);
        assert!(SentencePiece::from_bytes(word).is_err());
    }
}
