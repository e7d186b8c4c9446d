//! The one place the CLI reads the `DEBERTA_CPU_*` environment variables: into the library's
//! typed [`LoadOptions`], once per command.

use anyhow::Result;
use deberta::{KernelOptions, LinearFormat, LoadOptions};

/// Load options from the environment, with the encoder's linear layers in `format`.
pub fn load_options(format: LinearFormat) -> Result<LoadOptions> {
    let mut kernels = KernelOptions::from_vars(|name| std::env::var(name).ok())?;
    kernels.linear_format = format;
    Ok(LoadOptions {
        dtype: None,
        kernels,
    })
}
