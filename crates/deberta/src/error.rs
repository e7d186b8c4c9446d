//! The library's error type. Every failure names the file, tensor or field involved.

use std::path::PathBuf;

/// Errors from configs, checkpoints, inputs and the tensor engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written (the cause is chained, not repeated).
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file is malformed or does not have the expected schema.
    #[error("{path}: invalid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A config field has a value the model cannot use.
    #[error("config field `{field}`: {reason}")]
    Config { field: String, reason: String },

    /// A checkpoint directory lacks a file the model needs.
    #[error("{dir}: {what}")]
    MissingFile { dir: PathBuf, what: String },

    /// A weights file is truncated, corrupt or of an unsupported kind.
    #[error("{path}: {reason}")]
    WeightFile { path: PathBuf, reason: String },

    /// A tensor the model needs is not in the checkpoint.
    #[error("missing weight `{name}` in {source_desc}")]
    MissingWeight { name: String, source_desc: String },

    /// A tensor has a shape the config does not allow.
    #[error("weight `{name}` has shape {got:?}, the config requires {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// An input, config or weight would need more memory than the limit allows
    /// ([`crate::limits`]; the CLI's `--max-memory`, `DEBERTA_MAX_MEMORY`).
    #[error(
        "{what} would need about {}, over the memory limit of {} (raise it with --max-memory or \
         DEBERTA_MAX_MEMORY, or use shorter inputs / smaller batches)",
        crate::limits::human(*needed),
        crate::limits::human(*limit)
    )]
    MemoryLimit {
        what: String,
        needed: u64,
        limit: u64,
    },

    /// The inputs given to a forward pass are inconsistent.
    #[error("invalid input: {0}")]
    Input(String),

    /// A broken internal invariant (a bug, never a property of the input).
    #[error("internal error: {0}")]
    Internal(String),

    /// An execution path, kernel or format was asked for that this model or device cannot run.
    #[error("{requested} is not available: {reason}")]
    Unsupported { requested: String, reason: String },

    /// An error inside the tensor engine. Displayed without candle's backtrace and not chained
    /// as a source, so `{:#}` chains (anyhow) print the message once.
    #[error("{}", candle_message(.0))]
    Candle(candle_core::Error),

    /// A CPU kernel refused its call: `context` is the tensor or path it ran for, `error`
    /// names the kernel and what did not fit (not chained: printed once, here).
    #[error("{context}: {error}")]
    Kernel {
        context: String,
        error: deberta_kernels::Error,
    },
}

impl From<deberta_kernels::Error> for Error {
    /// A kernel's error on the CPU fast path.
    fn from(error: deberta_kernels::Error) -> Self {
        Error::Kernel {
            context: "CPU fast path".into(),
            error,
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE` is set
/// (the error itself stays in [`Error::Candle`]).
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        other => other.to_string(),
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    pub(crate) fn unsupported(requested: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unsupported {
            requested: requested.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`Error::WeightFile`] whose reason is a candle error, without candle's backtrace.
    pub(crate) fn weight_file_candle(
        path: impl Into<PathBuf>,
        what: &str,
        e: &candle_core::Error,
    ) -> Self {
        Self::weight_file(path, format!("{what}: {}", candle_message(e)))
    }

    pub(crate) fn weight_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::WeightFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candle_backtraces_are_not_in_messages() {
        let inner = candle_core::Error::Msg("shape mismatch".into());
        let with_bt = candle_core::Error::WithBacktrace {
            inner: Box::new(inner),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        let e = Error::from(with_bt);
        assert_eq!(e.to_string(), "shape mismatch");
        assert!(std::error::Error::source(&e).is_none());
    }
}
