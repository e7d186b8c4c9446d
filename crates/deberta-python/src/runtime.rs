//! Where the work runs: without the GIL, on the object's thread pool, with panics caught.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use pyo3::prelude::*;

use crate::error::{Failure, Outcome};

/// The intra-op thread pool of one model or pipeline: `threads=N` gives it a pool of its own
/// (the kernels and candle's matmul run on the rayon pool they are called from), so N actors
/// x N threads fill the cores without oversubscription; `None` uses the process-wide pool
/// (all cores, or `RAYON_NUM_THREADS`).
#[derive(Clone, Default)]
pub struct Threads {
    pool: Option<Arc<rayon::ThreadPool>>,
    count: Option<usize>,
}

impl Threads {
    /// A pool of `threads` threads (`None`: the global pool).
    pub fn new(threads: Option<usize>) -> Outcome<Self> {
        let Some(n) = threads else {
            return Ok(Threads::default());
        };
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let max = (4 * cores).clamp(64, 1024);
        if n == 0 || n > max {
            return Err(Failure::value(format!(
                "threads must be between 1 and {max} (4 per available core, {cores} here), got {n}"
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("deberta-rs-{i}"))
            .build()
            .map_err(|e| Failure::runtime(format!("cannot start {n} threads: {e}")))?;
        Ok(Threads {
            pool: Some(Arc::new(pool)),
            count: Some(n),
        })
    }

    /// The `threads` the pool was made with (`None`: the global pool).
    pub fn count(&self) -> Option<usize> {
        self.count
    }

    /// The number of threads work actually runs on.
    pub fn effective(&self) -> usize {
        self.pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    /// Runs `f` without the GIL on this pool; a panic becomes a `RuntimeError`.
    pub fn run<T, F>(&self, py: Python<'_>, f: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce() -> Outcome<T> + Send,
    {
        let pool = self.pool.clone();
        let result = py.detach(move || {
            let guarded = move || catch_unwind(AssertUnwindSafe(f));
            let caught = match pool {
                Some(p) => p.install(guarded),
                None => guarded(),
            };
            caught.unwrap_or_else(|payload| Err(panic_failure(payload)))
        });
        result.map_err(PyErr::from)
    }
}

/// Runs `f` without the GIL on the calling thread (tokenization); a panic becomes a
/// `RuntimeError`.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Outcome<T> + Send,
{
    Threads::default().run(py, f)
}

fn panic_failure(payload: Box<dyn std::any::Any + Send>) -> Failure {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Failure::runtime(format!(
        "internal error (a panic in the engine, caught): {what}; please report it"
    ))
}
