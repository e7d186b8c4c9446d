//! Errors of training: each names the file, the line, the field or the parameter at fault.

/// A training error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] deberta::Error),
    #[error(transparent)]
    Tokenizer(#[from] deberta_tokenizer::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A data file that cannot be used at all (no usable line, a missing field in every line).
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    /// A plot that could not be drawn or written (names the file).
    #[error("plot {0}")]
    Plot(String),
    /// A bad option or combination of options.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// The result of training operations.
pub type Result<T> = std::result::Result<T, Error>;
