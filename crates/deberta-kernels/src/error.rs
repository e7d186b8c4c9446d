//! The kernels' error type: each failure names the kernel and what did not fit.

/// Why a kernel refused to run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Buffers or a weight whose sizes do not fit the shapes the kernel was given.
    #[error("{kernel}: {what}")]
    Shape {
        /// The kernel (for example `packed f32 linear`, `attention`).
        kernel: &'static str,
        /// What does not fit.
        what: String,
    },
    /// The kernel needs instructions this CPU lacks.
    #[error("{kernel}: this CPU lacks the instructions it needs ({needs})")]
    Unsupported {
        /// The kernel.
        kernel: &'static str,
        /// The CPU features it needs.
        needs: &'static str,
    },
    /// A linear-layer format name that is not one of [`crate::LinearFormat::NAMES`].
    #[error("unknown linear-layer format {0:?}; expected one of {names:?}", names = crate::LinearFormat::NAMES)]
    UnknownFormat(String),
    /// An f32 kernel name that is not one of [`crate::tune::F32Kernel`]'s.
    #[error("unknown f32 linear kernel {0:?}")]
    UnknownKernel(String),
}

/// The kernels' result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(kernel: &'static str, what: impl Into<String>) -> Self {
        Error::Shape {
            kernel,
            what: what.into(),
        }
    }
}
