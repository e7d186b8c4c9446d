//! Errors of the engine as Python exceptions: the class from what went wrong, the message from
//! our error and its chain of causes (as the CLI prints them, joined by `: `).

use std::error::Error as StdError;

use pyo3::exceptions::{PyMemoryError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

/// The Python exception class a failure maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad input or option: `ValueError`.
    Value,
    /// A file that is missing, unreadable or malformed: `OSError`.
    Os,
    /// A memory limit: `MemoryError`.
    Memory,
    /// A failure inside the engine (or a caught panic): `RuntimeError`.
    Runtime,
}

/// A failure computed without the GIL, turned into a `PyErr` once it is held again.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The exception class.
    pub kind: Kind,
    /// The message.
    pub message: String,
}

impl Failure {
    /// A `ValueError`.
    pub fn value(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Value,
            message: message.into(),
        }
    }

    /// A `RuntimeError`.
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Runtime,
            message: message.into(),
        }
    }

    /// The same failure with `prefix: ` before its message.
    pub fn prefixed(self, prefix: &str) -> Self {
        Failure {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> Self {
        match f.kind {
            Kind::Value => PyValueError::new_err(f.message),
            Kind::Os => PyOSError::new_err(f.message),
            Kind::Memory => PyMemoryError::new_err(f.message),
            Kind::Runtime => PyRuntimeError::new_err(f.message),
        }
    }
}

/// `error: cause: cause ...`, each cause once.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

fn tokenizer_kind(e: &deberta_tokenizer::Error) -> Kind {
    use deberta_tokenizer::Error as E;
    match e {
        E::Options(_) | E::UnknownId(_) => Kind::Value,
        E::Fast { what, .. } if !what.starts_with("loading") => Kind::Value,
        E::FastPanicked { .. } => Kind::Runtime,
        _ => Kind::Os,
    }
}

fn deberta_kind(e: &deberta::Error) -> Kind {
    use deberta::Error as E;
    match e {
        E::Io { .. }
        | E::Json { .. }
        | E::Config { .. }
        | E::MissingFile { .. }
        | E::WeightFile { .. }
        | E::MissingWeight { .. }
        | E::WeightShape { .. } => Kind::Os,
        E::MemoryLimit { .. } => Kind::Memory,
        E::Input(_) | E::Unsupported { .. } => Kind::Value,
        _ => Kind::Runtime,
    }
}

impl From<deberta_tasks::Error> for Failure {
    fn from(e: deberta_tasks::Error) -> Self {
        use deberta_tasks::Error as E;
        let kind = match &e {
            E::Input { .. } | E::Option { .. } | E::Model(_) => Kind::Value,
            E::Hub { .. } => Kind::Os,
            E::Tokenizer(t) => tokenizer_kind(t),
            E::Deberta(d) => deberta_kind(d),
            _ => Kind::Runtime,
        };
        Failure {
            kind,
            message: chain(&e),
        }
    }
}

impl From<deberta::Error> for Failure {
    fn from(e: deberta::Error) -> Self {
        Failure {
            kind: deberta_kind(&e),
            message: chain(&e),
        }
    }
}

impl From<deberta_tokenizer::Error> for Failure {
    fn from(e: deberta_tokenizer::Error) -> Self {
        Failure {
            kind: tokenizer_kind(&e),
            message: chain(&e),
        }
    }
}

impl From<candle_core::Error> for Failure {
    fn from(e: candle_core::Error) -> Self {
        Failure::runtime(deberta::error_message_of_candle(&e))
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::value(e.to_string())
    }
}

/// Result of work done without the GIL.
pub type Outcome<T> = std::result::Result<T, Failure>;
