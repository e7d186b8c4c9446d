//! Errors of the task layer. Each names the input or option at fault; a cause is chained as the
//! error's `source`, never repeated in its message.

use std::path::PathBuf;

/// What can go wrong turning text into answers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input field is empty or malformed (`field` names it: `text`, `context`, ...).
    #[error("invalid `{field}`: {reason}")]
    Input {
        /// The input field.
        field: String,
        /// What was wrong.
        reason: String,
    },
    /// An option has a value the task cannot use.
    #[error("invalid option `{option}`: {reason}")]
    Option {
        /// The option.
        option: String,
        /// What was wrong.
        reason: String,
    },
    /// The model's config lacks something the task needs (labels, a mask token, ...).
    #[error("the model cannot run this task: {0}")]
    Model(String),
    /// A hub id could not be resolved to a local directory.
    #[error("cannot resolve model `{id}` (cache: {cache})")]
    Hub {
        /// The hub id.
        id: String,
        /// The cache directory searched.
        cache: PathBuf,
        /// Why.
        source: crate::hub::HubError,
    },
    /// The tokenizer failed (its error, which names the file or input, as is).
    #[error(transparent)]
    Tokenizer(#[from] deberta_tokenizer::Error),
    /// Loading or running the model failed.
    #[error(transparent)]
    Deberta(#[from] deberta::Error),
    /// A tensor operation failed (candle's message without the backtrace it attaches when
    /// `RUST_BACKTRACE` is set; not chained, so printed once).
    #[error("{}", deberta::error_message_of_candle(.0))]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

impl Error {
    /// An [`Error::Input`].
    pub fn input(field: &str, reason: impl Into<String>) -> Self {
        Error::Input {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Option`].
    pub fn option(option: &str, reason: impl Into<String>) -> Self {
        Error::Option {
            option: option.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias of the task layer.
pub type Result<T> = std::result::Result<T, Error>;
