//! The fused path's f32 linear-layer kernels chosen by measurement ([`deberta_kernels::tune`]):
//! each distinct weight shape of the encoder timed once per CPU model and thread count, within
//! [`TUNE_BUDGET`], the timings cached in `kernel-plans.json` under the user cache directory so
//! later loads skip the measurement ([`TuneMode`]).
//!
//! The cache is a hint, never trusted for safety: a missing, unreadable, oversized or malformed
//! file (or one entry that does not fit) is a warning and a fresh measurement, and a cached
//! kernel is still checked against the CPU when its weights are packed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deberta_kernels::tune::{
    choose_f32, f32_candidates, F32Bench, F32Choice, F32Kernel, KernelTiming, CLASSES, CLASS_ROWS,
    ROUNDS,
};
use deberta_kernels::KernelPlan;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The most time a load spends measuring (v3-base's four shapes take about 0.4-0.6 s on a
/// 2-core EPYC); shapes not reached keep the feature-based choice and are not cached.
pub const TUNE_BUDGET: Duration = Duration::from_millis(1000);
/// The cache file's name in the cache directory.
pub const CACHE_FILE: &str = "kernel-plans.json";
/// A cache file larger than this is ignored (and replaced).
const MAX_CACHE_BYTES: u64 = 4 << 20;
/// Entries kept when the cache is written (the newest).
const MAX_CACHE_ENTRIES: usize = 2048;
/// 2: timings taken in rounds across shapes ([`F32Bench`]); version 1's back-to-back
/// repetitions could all fall in one burst of other work, so its entries are measured again.
const CACHE_VERSION: u32 = 2;

/// Weights smaller than this (a 256 x 256 layer) are not measured: they take microseconds
/// whichever kernel runs, and timings that short are mostly noise.
pub const MIN_TUNED_WEIGHT: usize = 256 * 256;

/// Whether the fused path measures its f32 kernels (`DEBERTA_CPU_TUNE`).
///
/// A measured plan may run different kernels at different row counts, so a text's logits can
/// then differ in the last bits (about 1e-7 relative) between a batch of one and a larger
/// batch; [`TuneMode::Off`] keeps one kernel per layer, bit for bit the same in any batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneMode {
    /// The feature-based choice ([`KernelPlan`]), nothing measured (`DEBERTA_CPU_TUNE=0`).
    Off,
    /// Timings from the cache where it has them, else measured and cached.
    Cached,
    /// Measured now, whatever the cache holds, and cached (`DEBERTA_CPU_TUNE=fresh`).
    Fresh,
}

impl Default for TuneMode {
    /// [`TuneMode::Cached`] in an optimised build; [`TuneMode::Off`] in a debug build, whose
    /// own kernels run unoptimised beside an optimised `gemm` crate, so its timings would pick
    /// kernels for the wrong reason.
    fn default() -> Self {
        if cfg!(debug_assertions) {
            Self::Off
        } else {
            Self::Cached
        }
    }
}

/// One weight shape's measurement and choice.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeTuning {
    pub out_dim: usize,
    pub in_dim: usize,
    pub choice: F32Choice,
    /// Each candidate's nanoseconds per (row x output column) at [`CLASS_ROWS`].
    pub timings: Vec<KernelTiming>,
    /// Whether the timings came from the cache file.
    pub cached: bool,
}

/// The f32 kernel choices of one encoder, by weight shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KernelTuning {
    pub shapes: Vec<ShapeTuning>,
    /// Time spent measuring and reading / writing the cache.
    pub elapsed: Duration,
    /// The cache file read and written, when there is one.
    pub cache: Option<PathBuf>,
}

impl KernelTuning {
    /// The choice for a `[out_dim, in_dim]` weight (`None`: not tuned, the plan's default).
    pub fn choice(&self, out_dim: usize, in_dim: usize) -> Option<F32Choice> {
        self.shapes
            .iter()
            .find(|s| (s.out_dim, s.in_dim) == (out_dim, in_dim))
            .map(|s| s.choice)
    }

    /// One line per shape, for `--verbose`: the kernel at each timed row count, and whether
    /// the timings came from the cache.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "f32 linear kernels chosen by measurement in {:.0} ms (cache: {}):",
            self.elapsed.as_secs_f64() * 1e3,
            self.cache
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string())
        )];
        for s in &self.shapes {
            let kernels: Vec<String> = CLASS_ROWS
                .iter()
                .map(|&rows| format!("{rows} rows {}", s.choice.kernel_at(rows)))
                .collect();
            let source = if s.cached { "cached" } else { "measured" };
            lines.push(format!(
                "  [{}, {}]: {} ({source})",
                s.out_dim,
                s.in_dim,
                kernels.join(", ")
            ));
        }
        lines.join("\n")
    }

    /// The report `deberta bench` prints: per shape the packing, the kernel per rows class and
    /// the timings.
    pub fn to_json(&self) -> serde_json::Value {
        let shapes: Vec<_> = self
            .shapes
            .iter()
            .map(|s| {
                let kernels: Vec<_> = CLASS_ROWS
                    .iter()
                    .map(|&rows| s.choice.kernel_at(rows).name())
                    .collect();
                let timings: BTreeMap<_, _> = s
                    .timings
                    .iter()
                    .map(|t| (t.kernel.name(), t.ns_per_row_column))
                    .collect();
                serde_json::json!({
                    "shape": [s.out_dim, s.in_dim],
                    "packing": s.choice.packing.map(F32Kernel::name),
                    "kernel_at_rows": CLASS_ROWS.iter().zip(kernels).map(|(r, k)| (r.to_string(), k)).collect::<BTreeMap<_, _>>(),
                    "ns_per_row_column": timings,
                    "cached": s.cached,
                })
            })
            .collect();
        serde_json::json!({
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
            "cache": self.cache,
            "shapes": shapes,
        })
    }
}

/// Chooses the f32 kernels for `shapes` (`[out_dim, in_dim]`, duplicates allowed) under
/// `plan`: `None` with [`TuneMode::Off`] or where the plan has fewer than two candidates.
pub fn tune_f32(
    plan: &KernelPlan,
    shapes: &[(usize, usize)],
    mode: TuneMode,
) -> Result<Option<KernelTuning>> {
    let candidates = f32_candidates(plan);
    if mode == TuneMode::Off || candidates.len() < 2 {
        return Ok(None);
    }
    let start = Instant::now();
    let deadline = start + TUNE_BUDGET;
    let key = CacheKey::here(plan);
    let cache = cache_path();
    let mut file = match (&cache, mode) {
        (Some(path), TuneMode::Cached) => read_cache(path),
        _ => CacheFile::default(),
    };
    let mut distinct: Vec<(usize, usize)> = shapes
        .iter()
        .copied()
        .filter(|&(out_dim, in_dim)| out_dim.saturating_mul(in_dim) >= MIN_TUNED_WEIGHT)
        .collect();
    if distinct.is_empty() {
        return Ok(None);
    }
    distinct.sort_unstable();
    distinct.dedup();
    let cached: Vec<Option<Vec<KernelTiming>>> = distinct
        .iter()
        .map(|&shape| file.lookup(&key, shape, &candidates))
        .collect();
    let uncached: Vec<(usize, usize)> = distinct
        .iter()
        .zip(&cached)
        .filter(|(_, c)| c.is_none())
        .map(|(&shape, _)| shape)
        .collect();
    let mut measured = measure(plan, &candidates, &uncached, deadline)?.into_iter();
    let mut tuning = KernelTuning::default();
    let mut stored = false;
    for ((out_dim, in_dim), cached) in distinct.into_iter().zip(cached) {
        let from_cache = cached.is_some();
        // `measured` holds one entry per uncached shape, in order.
        let Some((timings, complete)) = cached.map(|t| (t, false)).or_else(|| measured.next())
        else {
            continue;
        };
        let Some(choice) = choose_f32(&timings) else {
            continue;
        };
        if complete {
            file.insert(&key, (out_dim, in_dim), &timings);
            stored = true;
        }
        tuning.shapes.push(ShapeTuning {
            out_dim,
            in_dim,
            choice,
            timings,
            cached: from_cache,
        });
    }
    if let (true, Some(path)) = (stored, &cache) {
        write_cache(path, &mut file);
    }
    tuning.cache = cache;
    tuning.elapsed = start.elapsed();
    log(&tuning, &key);
    Ok(Some(tuning))
}

/// Times `candidates` on each of `shapes`, round by round across all of them until every
/// shape has its [`ROUNDS`] or the deadline comes ([`F32Bench`]); per shape, the timings and
/// whether they are complete (only complete timings are cached).
fn measure(
    plan: &KernelPlan,
    candidates: &[F32Kernel],
    shapes: &[(usize, usize)],
    deadline: Instant,
) -> Result<Vec<(Vec<KernelTiming>, bool)>> {
    let kernel_error = |shape: (usize, usize)| {
        move |error| Error::Kernel {
            context: format!("timing the f32 linear kernels on a {shape:?} weight"),
            error,
        }
    };
    let mut benches = shapes
        .iter()
        .map(|&shape| F32Bench::new(plan, candidates, shape).map_err(kernel_error(shape)))
        .collect::<Result<Vec<_>>>()?;
    'rounds: for _ in 0..=ROUNDS {
        for (bench, &shape) in benches.iter_mut().zip(shapes) {
            if !bench.round(deadline).map_err(kernel_error(shape))? {
                break 'rounds;
            }
        }
    }
    Ok(benches
        .iter()
        .map(|bench| (bench.timings(), bench.complete()))
        .collect())
}

fn log(tuning: &KernelTuning, key: &CacheKey) {
    tracing::info!(cpu = %key.cpu, threads = key.threads, "{}", tuning.summary());
}

/// What a timing depends on besides the shape: the CPU model and features, the threads, and
/// the build (its version, and whether it is optimised: a debug build runs our kernels
/// unoptimised and the `gemm` crate optimised, so its timings say nothing of a release build).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CacheKey {
    cpu: String,
    threads: usize,
    build: String,
}

impl CacheKey {
    fn here(plan: &KernelPlan) -> Self {
        let f = plan.features;
        let flags: Vec<&str> = [
            (f.avx2_fma, "avx2+fma"),
            (f.avx512f, "avx512f"),
            (f.avx512bf16, "avx512bf16"),
            (f.avx512vnni, "avx512vnni"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect();
        Self {
            cpu: format!("{} [{}]", cpu_model(), flags.join(" ")),
            threads: candle_core::utils::get_num_threads(),
            build: this_build(),
        }
    }

    /// Whether `entry` was measured under this key.
    fn matches(&self, entry: &CacheEntry) -> bool {
        entry.cpu == self.cpu && entry.threads == self.threads && entry.build == self.build
    }
}

/// This build, as cache entries name it: `0.1.0 release` or `0.1.0 debug`.
fn this_build() -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!("{} {profile}", env!("CARGO_PKG_VERSION"))
}

/// The CPU's model name (`/proc/cpuinfo`), or `unknown`.
fn cpu_model() -> String {
    use std::io::{BufRead, BufReader, Read};
    let Ok(file) = std::fs::File::open("/proc/cpuinfo") else {
        return "unknown".into();
    };
    BufReader::new(file.take(1 << 20))
        .lines()
        .map_while(|l| l.ok())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().chars().take(200).collect())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `$DEBERTA_CACHE_DIR`, else `$XDG_CACHE_HOME/deberta`, else `$HOME/.cache/deberta`, with
/// [`CACHE_FILE`]; `None` where none is set.
pub fn cache_path() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = non_empty("DEBERTA_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|d| Path::new(&d).join("deberta")))
        .or_else(|| non_empty("HOME").map(|d| Path::new(&d).join(".cache").join("deberta")))?;
    Some(dir.join(CACHE_FILE))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: Vec<CacheEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    cpu: String,
    threads: usize,
    build: String,
    out_dim: usize,
    in_dim: usize,
    /// Kernel name -> nanoseconds per (row x column) at [`CLASS_ROWS`].
    ns_per_row_column: BTreeMap<String, [f64; CLASSES]>,
}

impl CacheFile {
    /// The cached timings of every candidate for this key and shape (`None` unless all are
    /// there and positive).
    fn lookup(
        &self,
        key: &CacheKey,
        (out_dim, in_dim): (usize, usize),
        candidates: &[F32Kernel],
    ) -> Option<Vec<KernelTiming>> {
        let entry = self
            .entries
            .iter()
            .rev()
            .find(|e| key.matches(e) && (e.out_dim, e.in_dim) == (out_dim, in_dim))?;
        candidates
            .iter()
            .map(|&kernel| {
                let ns = entry.ns_per_row_column.get(kernel.name())?;
                ns.iter()
                    .all(|v| v.is_finite() && *v > 0.0)
                    .then(|| KernelTiming {
                        kernel,
                        ns_per_row_column: ns.map(Some),
                    })
            })
            .collect()
    }

    fn insert(
        &mut self,
        key: &CacheKey,
        (out_dim, in_dim): (usize, usize),
        timings: &[KernelTiming],
    ) {
        self.entries
            .retain(|e| !(key.matches(e) && (e.out_dim, e.in_dim) == (out_dim, in_dim)));
        let ns_per_row_column = timings
            .iter()
            .filter_map(|t| {
                let ns: Option<Vec<f64>> = t.ns_per_row_column.iter().copied().collect();
                Some((t.kernel.name().to_string(), ns?.try_into().ok()?))
            })
            .collect();
        self.entries.push(CacheEntry {
            cpu: key.cpu.clone(),
            threads: key.threads,
            build: key.build.clone(),
            out_dim,
            in_dim,
            ns_per_row_column,
        });
    }
}

/// The cache file, or an empty one (with a warning naming the file) where it cannot be used.
fn read_cache(path: &Path) -> CacheFile {
    let read = || -> std::result::Result<CacheFile, String> {
        use std::io::Read;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheFile::default()),
            Err(e) => return Err(e.to_string()),
        };
        // Read through a bound, not by the size the file reports (a device or a growing file
        // reports none).
        let mut text = Vec::new();
        file.take(MAX_CACHE_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| e.to_string())?;
        if text.len() as u64 > MAX_CACHE_BYTES {
            return Err(format!("over the {MAX_CACHE_BYTES}-byte limit"));
        }
        let file: CacheFile = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        if file.version != CACHE_VERSION {
            return Err(format!(
                "version {}, expected {CACHE_VERSION}",
                file.version
            ));
        }
        Ok(file)
    };
    read().unwrap_or_else(|why| {
        tracing::warn!(file = %path.display(), "kernel plan cache ignored (measuring again): {why}");
        CacheFile::default()
    })
}

/// Writes the cache through a temporary file and a rename (so a concurrent reader sees the
/// old or the new file, whole); a failure is a warning.
fn write_cache(path: &Path, file: &mut CacheFile) {
    file.version = CACHE_VERSION;
    let excess = file.entries.len().saturating_sub(MAX_CACHE_ENTRIES);
    file.entries.drain(..excess);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        tracing::warn!(file = %path.display(), "kernel plan cache not written: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            cpu: "Test CPU [avx2+fma]".into(),
            threads: 2,
            build: "0.1.0 release".into(),
        }
    }

    fn timings() -> Vec<KernelTiming> {
        vec![
            KernelTiming {
                kernel: F32Kernel::Avx2,
                ns_per_row_column: [Some(0.3), Some(0.2), Some(0.1)],
            },
            KernelTiming {
                kernel: F32Kernel::GemmCrate,
                ns_per_row_column: [Some(0.4), Some(0.1), Some(0.2)],
            },
        ]
    }

    #[test]
    fn the_cache_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("deberta-tune-{}", std::process::id()));
        let path = dir.join(CACHE_FILE);
        let mut file = CacheFile::default();
        file.insert(&key(), (768, 3072), &timings());
        file.insert(&key(), (768, 3072), &timings()); // replaced, not duplicated
        write_cache(&path, &mut file);
        let back = read_cache(&path);
        assert_eq!(back.entries.len(), 1);
        let candidates = [F32Kernel::Avx2, F32Kernel::GemmCrate];
        let got = back.lookup(&key(), (768, 3072), &candidates).unwrap();
        assert_eq!(got, timings());
        // Another shape, thread count, CPU, or a candidate the entry lacks: not found.
        assert!(back.lookup(&key(), (768, 768), &candidates).is_none());
        let three = CacheKey {
            threads: 3,
            ..key()
        };
        assert!(back.lookup(&three, (768, 3072), &candidates).is_none());
        let with_avx512 = [F32Kernel::Avx512, F32Kernel::Avx2, F32Kernel::GemmCrate];
        assert!(back.lookup(&key(), (768, 3072), &with_avx512).is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A hostile or broken cache is ignored, never trusted: garbage, a wrong version, negative
    /// or missing timings, an oversized file.
    #[test]
    fn a_bad_cache_is_ignored() {
        let dir = std::env::temp_dir().join(format!("deberta-tune-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CACHE_FILE);
        let candidates = [F32Kernel::Avx2, F32Kernel::GemmCrate];
        for text in [
            "not json".to_string(),
            r#"{"version": 99, "entries": []}"#.to_string(),
            r#"{"version": 1, "entries": [{"cpu": "Test CPU [avx2+fma]", "threads": 2, "build": "0.1.0 release", "out_dim": 8, "in_dim": 8, "ns_per_row_column": {"avx2-fma packed": [-1, 1, 1], "gemm crate": [1, 1, 1]}}]}"#.to_string(),
            r#"{"version": 1, "entries": [{"cpu": "Test CPU [avx2+fma]", "threads": 2, "build": "0.1.0 release", "out_dim": 8, "in_dim": 8, "ns_per_row_column": {"gemm crate": [1, 1, 1]}}]}"#.to_string(),
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(read_cache(&path).lookup(&key(), (8, 8), &candidates).is_none());
        }
        let big = vec![b' '; MAX_CACHE_BYTES as usize + 1];
        std::fs::write(&path, big).unwrap();
        assert!(read_cache(&path).entries.is_empty());
        assert!(read_cache(&dir.join("missing.json")).entries.is_empty());
        if Path::new("/dev/zero").exists() {
            // Endless, and of no reported size: read up to the bound, then ignored.
            assert!(read_cache(Path::new("/dev/zero")).entries.is_empty());
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn off_a_single_candidate_or_small_weights_tune_nothing() {
        let plan = KernelPlan::detect();
        assert_eq!(tune_f32(&plan, &[(256, 256)], TuneMode::Off).unwrap(), None);
        let unpacked = KernelPlan {
            packed: false,
            ..plan
        };
        assert_eq!(
            tune_f32(&unpacked, &[(256, 256)], TuneMode::Fresh).unwrap(),
            None
        );
        assert_eq!(
            tune_f32(&plan, &[(8, 8), (255, 256)], TuneMode::Fresh).unwrap(),
            None
        );
    }
}
