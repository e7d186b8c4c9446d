//! Error type shared by every module of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a tokenizer.
///
/// Each variant names the file or field involved, so a message is actionable without a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The sentencepiece model (`spm.model`) is not a valid `ModelProto`.
    #[error("invalid sentencepiece model: {context}: {reason}")]
    SpmProto {
        /// Which message/field was being read (e.g. `ModelProto.pieces[12].score`).
        context: String,
        /// What was wrong.
        reason: String,
    },
    /// `spm.model` is not a valid protobuf `ModelProto` (truncated, wrong wire types, ...).
    #[error("invalid sentencepiece model: not a ModelProto")]
    SpmDecode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sentencepiece model parsed but is not usable (duplicate piece, no `<unk>`, ...).
    #[error("unsupported sentencepiece model: {0}")]
    SpmModel(String),
    /// The precompiled normalisation charsmap is malformed.
    #[error("invalid precompiled_charsmap in normalizer_spec: {0}")]
    Charsmap(String),
    /// A JSON configuration file is malformed.
    #[error("invalid JSON in {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A configuration value has the wrong type or an unsupported value.
    #[error("invalid value for `{field}` in {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The key.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// Neither `tokenizer.json` nor `spm.model` was found.
    #[error("no tokenizer files in {0} (need tokenizer.json or spm.model)")]
    NoTokenizerFiles(PathBuf),
    /// The HF `tokenizers` library reported an error.
    #[error("tokenizers library: {what}")]
    Fast {
        /// What was being done (`loading models/x/tokenizer.json`, `encoding`, ...).
        what: String,
        /// The library's error.
        source: tokenizers::Error,
    },
    /// The HF `tokenizers` library panicked (caught; the tokenizer stays usable).
    #[error("the tokenizers library panicked while {what}")]
    FastPanicked {
        /// What was being done.
        what: String,
    },
    /// A special token of the configuration is not in the vocabulary of `tokenizer.json`.
    #[error("special token {token:?} is not in the vocabulary")]
    MissingSpecialToken {
        /// The token (`[CLS]`, `[SEP]`, `[PAD]`).
        token: String,
    },
    /// Invalid encoding options (e.g. a stride that is not smaller than the window).
    #[error("invalid options: {0}")]
    Options(String),
    /// A token id outside the vocabulary was passed to a decode function.
    #[error("token id {0} is outside the vocabulary")]
    UnknownId(u32),
}

/// Crate result alias.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds an [`Error::SpmProto`].
    pub(crate) fn proto(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::SpmProto {
            context: context.into(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
