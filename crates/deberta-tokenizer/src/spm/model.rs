//! A minimal reader for the sentencepiece `ModelProto` (`spm.model`).
//!
//! Only the protobuf wire format is implemented (varints, 64/32-bit fixed values and
//! length-delimited fields); unknown fields are skipped, as protobuf requires. Writing a full
//! protobuf dependency for a dozen fields was not worth it. Field numbers follow
//! `sentencepiece_model.proto` (sentencepiece 0.2.x).

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

/// A protobuf field value as it appears on the wire.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Sequential reader over a protobuf message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], context: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            context,
        }
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::proto(
            format!("{} (byte offset {})", self.context, self.pos),
            reason,
        )
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(format!("field of {n} bytes runs past the end")))?;
        let out = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }

    /// Reads the next `(field number, value)`, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| self.err("huge length"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(fixed(self.take(4)?))),
            wire => return Err(self.err(format!("unsupported wire type {wire}"))),
        };
        Ok(Some((field, value)))
    }
}

/// Copies a slice of known length into an array (the caller guarantees the length).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

fn expect_varint(v: &Value<'_>, what: &str) -> Result<u64> {
    match v {
        Value::Varint(x) => Ok(*x),
        _ => Err(Error::proto(what, "expected a varint")),
    }
}

fn expect_bytes<'a>(v: &Value<'a>, what: &str) -> Result<&'a [u8]> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(Error::proto(what, "expected a length-delimited field")),
    }
}

fn expect_string(v: &Value<'_>, what: &str) -> Result<String> {
    let bytes = expect_bytes(v, what)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::proto(what, "not valid UTF-8"))
}

fn expect_f32(v: &Value<'_>, what: &str) -> Result<f32> {
    match v {
        Value::Fixed32(x) => Ok(f32::from_bits(*x)),
        _ => Err(Error::proto(what, "expected a 32-bit float")),
    }
}

fn parse_piece(buf: &[u8]) -> Result<Piece> {
    let mut r = Reader::new(buf, "ModelProto.pieces");
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => piece.piece = expect_string(&v, "SentencePiece.piece")?,
            2 => piece.score = expect_f32(&v, "SentencePiece.score")?,
            3 => {
                let t = expect_varint(&v, "SentencePiece.type")?;
                piece.kind = PieceType::from_wire(t).ok_or_else(|| {
                    Error::proto("SentencePiece.type", format!("unknown type {t}"))
                })?;
            }
            _ => {}
        }
    }
    Ok(piece)
}

fn parse_trainer_spec(buf: &[u8]) -> Result<TrainerSpec> {
    let mut r = Reader::new(buf, "ModelProto.trainer_spec");
    let mut spec = TrainerSpec::default();
    while let Some((field, v)) = r.next_field()? {
        match field {
            3 => {
                spec.model_type = match expect_varint(&v, "TrainerSpec.model_type")? {
                    1 => ModelType::Unigram,
                    2 => ModelType::Bpe,
                    3 => ModelType::Word,
                    4 => ModelType::Char,
                    t => {
                        return Err(Error::proto(
                            "TrainerSpec.model_type",
                            format!("unknown model type {t}"),
                        ))
                    }
                }
            }
            24 => {
                spec.treat_whitespace_as_suffix =
                    expect_varint(&v, "TrainerSpec.treat_whitespace_as_suffix")? != 0
            }
            35 => spec.byte_fallback = expect_varint(&v, "TrainerSpec.byte_fallback")? != 0,
            44 => spec.unk_surface = expect_string(&v, "TrainerSpec.unk_surface")?,
            45 => spec.unk_piece = expect_string(&v, "TrainerSpec.unk_piece")?,
            _ => {}
        }
    }
    Ok(spec)
}

fn parse_normalizer_spec(buf: &[u8]) -> Result<NormalizerSpec> {
    let mut r = Reader::new(buf, "ModelProto.normalizer_spec");
    let mut spec = NormalizerSpec::default();
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => spec.name = expect_string(&v, "NormalizerSpec.name")?,
            2 => {
                spec.precompiled_charsmap =
                    expect_bytes(&v, "NormalizerSpec.precompiled_charsmap")?.to_vec()
            }
            3 => spec.add_dummy_prefix = expect_varint(&v, "NormalizerSpec.add_dummy_prefix")? != 0,
            4 => {
                spec.remove_extra_whitespaces =
                    expect_varint(&v, "NormalizerSpec.remove_extra_whitespaces")? != 0
            }
            5 => {
                spec.escape_whitespaces =
                    expect_varint(&v, "NormalizerSpec.escape_whitespaces")? != 0
            }
            _ => {}
        }
    }
    Ok(spec)
}

impl ModelProto {
    /// Parses a serialized `ModelProto` (the content of `spm.model`).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf, "ModelProto");
        let mut model = ModelProto::default();
        while let Some((field, v)) = r.next_field()? {
            match field {
                1 => model
                    .pieces
                    .push(parse_piece(expect_bytes(&v, "ModelProto.pieces")?)?),
                2 => {
                    model.trainer_spec =
                        parse_trainer_spec(expect_bytes(&v, "ModelProto.trainer_spec")?)?
                }
                3 => {
                    model.normalizer_spec =
                        parse_normalizer_spec(expect_bytes(&v, "ModelProto.normalizer_spec")?)?
                }
                _ => {}
            }
        }
        if model.pieces.is_empty() {
            return Err(Error::proto("ModelProto.pieces", "the vocabulary is empty"));
        }
        Ok(model)
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
}
