//! The compiled core of the `deberta-rs` Python package (`deberta_rs._deberta_rs`).
//!
//! Three classes with plain, typed signatures; the transformers-shaped API (keyword handling,
//! `pipeline()`, pickling, numpy conversions of inputs) is the Python package around them
//! (`python/deberta_rs`).
//!
//! * [`NativeTokenizer`]: encode batches of texts or pairs into numpy arrays, decode.
//! * [`NativeModel`]: a forward pass of any head on numpy arrays, outputs named as transformers'.
//! * [`NativePipeline`]: the task pipelines of `deberta-tasks` (those the CLI runs), inputs and
//!   outputs as JSON, so the values are the CLI's to the last bit.
//!
//! Every call that tokenizes or computes releases the GIL (`Python::detach`), runs on the
//! object's own thread pool when it has one (`threads=`), and turns errors into Python
//! exceptions: `ValueError` for bad input or options, `OSError` for missing or malformed
//! files, `RuntimeError` for a failure inside the engine. A panic is caught and raised as
//! `RuntimeError`; none unwinds into Python.

mod error;
mod model;
mod pipeline;
mod runtime;
mod tokenizer;

use pyo3::prelude::*;

pub use model::NativeModel;
pub use pipeline::NativePipeline;
pub use tokenizer::NativeTokenizer;

/// The module `deberta_rs._deberta_rs`.
#[pymodule]
#[pyo3(name = "_deberta_rs")]
fn deberta_rs_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeTokenizer>()?;
    m.add_class::<NativeModel>()?;
    m.add_class::<NativePipeline>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(cpu_features, m)?)?;
    Ok(())
}

/// The CPU features the kernels detected (`avx2`, `fma`, `avx512f`, ...), for reports.
#[pyfunction]
fn cpu_features() -> Vec<String> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
            (
                "avx512vnni",
                std::arch::is_x86_feature_detected!("avx512vnni"),
            ),
            (
                "avx512bf16",
                std::arch::is_x86_feature_detected!("avx512bf16"),
            ),
        ] {
            if on {
                out.push(name.to_string());
            }
        }
    }
    out
}
