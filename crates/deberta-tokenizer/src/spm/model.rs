//! The sentencepiece `ModelProto` (`spm.model`): the fields that affect encoding.
//!
//! The protobuf wire format is decoded by `prost` from derive structs that mirror the used part
//! of `sentencepiece_model.proto` (sentencepiece 0.2.x; no build script, no protoc); unknown
//! fields are skipped, as protobuf requires. Enum fields are read as plain integers and checked
//! here, so an unknown piece or model type is an error naming the field.

use crate::error::{Error, Result};

/// Type of a sentencepiece vocabulary entry (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    /// An ordinary piece (`NORMAL`, 1).
    Normal,
    /// The unknown piece (`UNKNOWN`, 2).
    Unknown,
    /// A control symbol such as `<s>` (`CONTROL`, 3); never produced by segmentation.
    Control,
    /// A user-defined symbol (`USER_DEFINED`, 4); always matched as a whole.
    UserDefined,
    /// A piece kept in the vocabulary but never produced (`UNUSED`, 5).
    Unused,
    /// A byte-fallback piece `<0xNN>` (`BYTE`, 6).
    Byte,
}

impl PieceType {
    fn from_wire(v: u64) -> Option<Self> {
        Some(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece text (`▁` marks a word boundary).
    pub piece: String,
    /// Log-probability (unigram) or merge priority (BPE).
    pub score: f32,
    /// Entry type.
    pub kind: PieceType,
}

/// Segmentation algorithm (`TrainerSpec.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Unigram language model (1, the default).
    Unigram,
    /// Byte-pair encoding (2).
    Bpe,
    /// Whitespace-split words (3); not supported for encoding.
    Word,
    /// Characters (4); not supported for encoding.
    Char,
}

/// The `TrainerSpec` fields that affect encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSpec {
    /// Segmentation algorithm.
    pub model_type: ModelType,
    /// Whether unknown characters are emitted as `<0xNN>` byte pieces.
    pub byte_fallback: bool,
    /// Whether `▁` is appended instead of prepended.
    pub treat_whitespace_as_suffix: bool,
    /// The text that `decode` emits for the `<unk>` piece.
    pub unk_surface: String,
    /// The configured unknown piece string.
    pub unk_piece: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: ModelType::Unigram,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            unk_surface: " \u{2047} ".to_string(),
            unk_piece: "<unk>".to_string(),
        }
    }
}

/// The `NormalizerSpec` fields that affect encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    /// Rule name (`nmt_nfkc`, `identity`, ...); informational only.
    pub name: String,
    /// Serialized double-array trie plus replacement strings.
    pub precompiled_charsmap: Vec<u8>,
    /// Prepend `▁` to the input.
    pub add_dummy_prefix: bool,
    /// Strip leading/trailing whitespace and collapse runs of spaces.
    pub remove_extra_whitespaces: bool,
    /// Replace `' '` by `▁`.
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// The parsed `ModelProto`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelProto {
    /// Vocabulary, in id order.
    pub pieces: Vec<Piece>,
    /// Trainer options.
    pub trainer_spec: TrainerSpec,
    /// Normaliser options.
    pub normalizer_spec: NormalizerSpec,
}

/// Derive structs for the protobuf wire format (field numbers of `sentencepiece_model.proto`).
/// Every field is optional, as in proto2; absent fields take the defaults of the `.proto`.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(message, repeated, tag = "1")]
        pub pieces: Vec<SentencePiece>,
        #[prost(message, optional, tag = "2")]
        pub trainer_spec: Option<TrainerSpec>,
        #[prost(message, optional, tag = "3")]
        pub normalizer_spec: Option<NormalizerSpec>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SentencePiece {
        #[prost(string, optional, tag = "1")]
        pub piece: Option<String>,
        #[prost(float, optional, tag = "2")]
        pub score: Option<f32>,
        /// `Type`, checked by [`super::PieceType::from_wire`].
        #[prost(uint64, optional, tag = "3")]
        pub kind: Option<u64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TrainerSpec {
        /// `ModelType`, checked when converted.
        #[prost(uint64, optional, tag = "3")]
        pub model_type: Option<u64>,
        #[prost(bool, optional, tag = "24")]
        pub treat_whitespace_as_suffix: Option<bool>,
        #[prost(bool, optional, tag = "35")]
        pub byte_fallback: Option<bool>,
        #[prost(string, optional, tag = "44")]
        pub unk_surface: Option<String>,
        #[prost(string, optional, tag = "45")]
        pub unk_piece: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NormalizerSpec {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub precompiled_charsmap: Option<Vec<u8>>,
        #[prost(bool, optional, tag = "3")]
        pub add_dummy_prefix: Option<bool>,
        #[prost(bool, optional, tag = "4")]
        pub remove_extra_whitespaces: Option<bool>,
        #[prost(bool, optional, tag = "5")]
        pub escape_whitespaces: Option<bool>,
    }
}

impl Piece {
    fn from_wire(i: usize, p: wire::SentencePiece) -> Result<Self> {
        let kind = match p.kind {
            None => PieceType::Normal,
            Some(t) => PieceType::from_wire(t).ok_or_else(|| {
                Error::proto(
                    format!("ModelProto.pieces[{i}].type"),
                    format!("unknown type {t}"),
                )
            })?,
        };
        Ok(Piece {
            piece: p.piece.unwrap_or_default(),
            score: p.score.unwrap_or(0.0),
            kind,
        })
    }
}

impl TrainerSpec {
    fn from_wire(t: wire::TrainerSpec) -> Result<Self> {
        let default = TrainerSpec::default();
        let model_type = match t.model_type {
            None | Some(1) => ModelType::Unigram,
            Some(2) => ModelType::Bpe,
            Some(3) => ModelType::Word,
            Some(4) => ModelType::Char,
            Some(other) => {
                return Err(Error::proto(
                    "TrainerSpec.model_type",
                    format!("unknown model type {other}"),
                ))
            }
        };
        Ok(TrainerSpec {
            model_type,
            byte_fallback: t.byte_fallback.unwrap_or(default.byte_fallback),
            treat_whitespace_as_suffix: t
                .treat_whitespace_as_suffix
                .unwrap_or(default.treat_whitespace_as_suffix),
            unk_surface: t.unk_surface.unwrap_or(default.unk_surface),
            unk_piece: t.unk_piece.unwrap_or(default.unk_piece),
        })
    }
}

impl NormalizerSpec {
    fn from_wire(n: wire::NormalizerSpec) -> Self {
        let default = NormalizerSpec::default();
        NormalizerSpec {
            name: n.name.unwrap_or(default.name),
            precompiled_charsmap: n.precompiled_charsmap.unwrap_or_default(),
            add_dummy_prefix: n.add_dummy_prefix.unwrap_or(default.add_dummy_prefix),
            remove_extra_whitespaces: n
                .remove_extra_whitespaces
                .unwrap_or(default.remove_extra_whitespaces),
            escape_whitespaces: n.escape_whitespaces.unwrap_or(default.escape_whitespaces),
        }
    }
}

impl ModelProto {
    /// Parses a serialized `ModelProto` (the content of `spm.model`).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let raw = <wire::ModelProto as prost::Message>::decode(buf)
            .map_err(|e| Error::SpmDecode(Box::new(e)))?;
        let pieces = raw
            .pieces
            .into_iter()
            .enumerate()
            .map(|(i, p)| Piece::from_wire(i, p))
            .collect::<Result<Vec<_>>>()?;
        if pieces.is_empty() {
            return Err(Error::proto("ModelProto.pieces", "the vocabulary is empty"));
        }
        Ok(ModelProto {
            pieces,
            trainer_spec: TrainerSpec::from_wire(raw.trainer_spec.unwrap_or_default())?,
            normalizer_spec: NormalizerSpec::from_wire(raw.normalizer_spec.unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_and_truncation() {
        // field 1 (pieces), len 7: piece "ab" score 1.0
        let piece = [0x0a, 0x02, b'a', b'b', 0x15, 0, 0, 0x80, 0x3f];
        let mut msg = vec![0x0a, piece.len() as u8];
        msg.extend_from_slice(&piece);
        let m = ModelProto::parse(&msg).unwrap();
        assert_eq!(m.pieces[0].piece, "ab");
        assert_eq!(m.pieces[0].score, 1.0);
        assert!(ModelProto::parse(&msg[..msg.len() - 1]).is_err());
        assert!(ModelProto::parse(&[]).is_err());
        assert!(ModelProto::parse(&[0xff; 12]).is_err());
    }

    #[test]
    fn protobuf_rules() {
        let piece = [0x0a, 0x01, b'a', 0x18, 0x02];
        let mut msg = vec![0x0a, piece.len() as u8];
        msg.extend_from_slice(&piece);
        // Field number 0 is invalid protobuf (as for sentencepiece's C++ reader).
        let mut zero = msg.clone();
        zero.extend_from_slice(&[0x00, 0x01]);
        assert!(matches!(ModelProto::parse(&zero), Err(Error::SpmDecode(_))));
        // The last value of a repeated scalar wins, even after an invalid one.
        let mut twice = msg.clone();
        twice.extend_from_slice(&[0x12, 0x04, 0x18, 0x09, 0x18, 0x02]);
        let m = ModelProto::parse(&twice).unwrap();
        assert_eq!(m.trainer_spec.model_type, ModelType::Bpe);
        assert_eq!(m.pieces[0].kind, PieceType::Unknown);
        // Unknown enum values are errors naming the field.
        let mut bad = msg.clone();
        bad.extend_from_slice(&[0x12, 0x02, 0x18, 0x09]);
        let err = ModelProto::parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("TrainerSpec.model_type: unknown model type 9"),
            "{err}"
        );
        // Defaults of the .proto for absent fields.
        let m = ModelProto::parse(&msg).unwrap();
        assert!(m.normalizer_spec.add_dummy_prefix && m.normalizer_spec.escape_whitespaces);
        assert_eq!(m.trainer_spec.unk_surface, " \u{2047} ");
    }
}
