//! One module per subcommand.

pub mod bench;
mod bench_mixed;
pub mod choice;
pub mod classify;
pub mod convert;
pub mod fill_mask;
pub mod forward;
pub mod grad;
pub mod kernel_env;
pub mod ner;
pub mod qa;
pub mod serve;
pub mod task_common;
pub mod tokenize;
pub mod train;
pub mod train_data;
pub mod zero_shot;

/// `--threads`: at least 1 and at most 4 threads per available core (never fewer than 64 nor
/// more than 1024 allowed), so a typo cannot spawn 100,000 threads.
pub fn parse_threads(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of threads"))?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let max = (4 * cores).clamp(64, 1024);
    match n {
        0 => Err("must be at least 1".into()),
        n if n > max => Err(format!(
            "{n} threads is over the limit of {max} (4 per available core, {cores} here; at \
             least 64, at most 1024)"
        )),
        n => Ok(n),
    }
}

/// `--max-memory`: a size such as `8G`, `512M` or a number of bytes.
pub fn parse_max_memory(text: &str) -> Result<u64, String> {
    match deberta::limits::parse_size(text)? {
        0 => Err("must be more than 0".into()),
        n => Ok(n),
    }
}

/// `--verbose`: builds the fused path's weights now and prints the f32 kernel choice measured
/// (or read from the cache) for them, when there is one.
pub fn print_kernel_tuning(model: &deberta::TaskModel) -> anyhow::Result<()> {
    model.prepare()?;
    if let Some(tuning) = model.kernel_tuning()? {
        eprintln!("{}", tuning.summary());
    }
    Ok(())
}
