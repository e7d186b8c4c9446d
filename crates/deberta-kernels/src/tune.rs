//! Kernel choice by measurement: the f32 linear-layer kernels a plan could run on this CPU
//! ([`f32_candidates`]: the AVX-512 and AVX2 packed kernels, the `gemm` crate), timed on a
//! weight shape at three row counts ([`CLASS_ROWS`]) within a deadline ([`time_f32`]), and
//! the fastest chosen per shape and rows class ([`choose_f32`]).
//!
//! Which kernel wins is a property of the CPU, not of the instruction set: on one AVX-512 EPYC
//! the 512-bit kernel was 2.2x the `gemm` crate at 128 rows and 0.93x at 4096, so
//! "AVX-512 if present" lost at large batches. A layer keeps one packed copy (the packing
//! chosen for its shape) and may still send some row counts to the `gemm` crate, which reads
//! the f32 weight the model holds anyway.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::avx512_linear::Kind;
use crate::rows::{Act, Epilogue};
// Timing data: the values do not change the time.
use crate::test_util::pseudo_random;
use crate::{linear_f32, Error, KernelPlan, LinearScratch, PreparedLinear, Result};

/// Rows classes a choice is made for.
pub const CLASSES: usize = 3;
/// The row count each class is timed at: one short sequence's tokens or fewer, a few hundred,
/// a batch.
pub const CLASS_ROWS: [usize; CLASSES] = [16, 128, 512];
/// Output columns timed at most: the kernels' time per column is flat well before this, and
/// capping bounds the measurement (v3-base: about 0.5 s on 2 cores). 768 is 32 panels of the
/// AVX2 kernel's 24 columns and 24 of the AVX-512 kernel's 32, so both split it into whole,
/// even tasks as they split a real 768- or 3072-wide layer; 512 columns (21.3 AVX2 panels) left
/// one short task and timed the AVX2 kernel at 128 rows on 2 threads 19% slower per column than
/// at 512 rows, a cost the model's layers do not have.
pub const TIMED_COLUMNS: usize = 768;
/// Timed rounds over every (kernel, class), after one untimed round; each pair's minimum is
/// kept (the run least disturbed by other work on the machine).
pub const ROUNDS: usize = 3;
/// How much faster (relative) a kernel must time than the preferred one to replace it: a
/// measurement disturbed by other work should not move the choice off the default.
pub const MARGIN: f64 = 0.05;

/// The class of a multiplication of `rows` input rows (boundaries at the geometric means of
/// [`CLASS_ROWS`], rounded).
pub fn rows_class(rows: usize) -> usize {
    match rows {
        0..=45 => 0,
        46..=256 => 1,
        _ => 2,
    }
}

/// An f32 linear-layer kernel a plan can choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum F32Kernel {
    /// [`crate::avx512`]'s `vfmadd231ps` tiles on the AVX-512 packed copy.
    Avx512,
    /// [`crate::sgemm`]'s packed AVX2 + FMA kernel.
    Avx2,
    /// The `gemm` crate on the f32 weight as it is (no copy).
    GemmCrate,
}

impl F32Kernel {
    const ALL: [Self; 3] = [Self::Avx512, Self::Avx2, Self::GemmCrate];

    /// A name for reports and the cache file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512f packed",
            Self::Avx2 => "avx2-fma packed",
            Self::GemmCrate => "gemm crate",
        }
    }

    /// Whether the kernel needs a packed copy of the weight.
    pub fn packs(self) -> bool {
        self != Self::GemmCrate
    }
}

impl fmt::Display for F32Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for F32Kernel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::UnknownKernel(s.to_string()))
    }
}

/// The f32 kernels `plan` can run here, in order of preference on a tie: none to choose among
/// (an empty list) when the plan does not pack (`gemm` crate only), runs the portable twins, or
/// has a single candidate.
pub fn f32_candidates(plan: &KernelPlan) -> Vec<F32Kernel> {
    if !plan.packed || plan.avx512 == crate::Avx512Mode::Portable {
        return Vec::new();
    }
    let mut kernels = Vec::with_capacity(3);
    if plan.avx512 == crate::Avx512Mode::Auto && plan.avx512_hardware(Kind::F32) {
        kernels.push(F32Kernel::Avx512);
    }
    if plan.features.avx2_fma && crate::sgemm::available() {
        kernels.push(F32Kernel::Avx2);
    }
    if kernels.is_empty() {
        return kernels;
    }
    kernels.push(F32Kernel::GemmCrate);
    kernels
}

/// One kernel's time on one weight shape: nanoseconds per input row per output column at each
/// class's row count (`None` where the deadline came first).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelTiming {
    pub kernel: F32Kernel,
    pub ns_per_row_column: [Option<f64>; CLASSES],
}

/// Times each of `kernels` on a random `[min(out_dim, TIMED_COLUMNS), in_dim]` weight with a
/// bias, at each class's row count, for [`ROUNDS`] rounds or until `deadline` (the classes
/// never reached are `None`). One shape's [`F32Bench`] on its own; a model's shapes are better
/// timed round by round together ([`F32Bench::round`]).
pub fn time_f32(
    plan: &KernelPlan,
    kernels: &[F32Kernel],
    shape: (usize, usize),
    deadline: Instant,
) -> Result<Vec<KernelTiming>> {
    let mut bench = F32Bench::new(plan, kernels, shape)?;
    while !bench.complete() && bench.round(deadline)? {}
    Ok(bench.timings())
}

/// The timing of `kernels` on one weight shape, a round at a time: each round runs every class
/// once on every kernel (the kernels taking turns, in a rotating order, so other work on the
/// machine disturbs them alike) and keeps each (kernel, class)'s fastest run so far. The first
/// round is an untimed warm-up.
///
/// Rounds, not repetitions within a class, so that a burst of other work (tens of
/// milliseconds) spoils one round of every class rather than every run of one class: seen on a
/// 2-core EPYC, where three back-to-back runs of one class all came out 2x slow and cached a
/// wrong choice.
pub struct F32Bench {
    kernels: Vec<F32Kernel>,
    /// Per kernel, its packed copy (`None` for the `gemm` crate).
    prepared: Vec<Option<PreparedLinear>>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    input: Vec<f32>,
    columns: usize,
    in_dim: usize,
    /// `[kernel][class]` fastest run so far.
    best: Vec<[Option<Duration>; CLASSES]>,
    /// Rounds run, the warm-up included.
    rounds: usize,
    scratch: LinearScratch,
    out: Vec<f32>,
}

impl F32Bench {
    /// Packs a random `[min(out_dim, TIMED_COLUMNS), in_dim]` weight for each kernel.
    pub fn new(
        plan: &KernelPlan,
        kernels: &[F32Kernel],
        (out_dim, in_dim): (usize, usize),
    ) -> Result<Self> {
        let columns = out_dim.min(TIMED_COLUMNS);
        let weight = pseudo_random(columns * in_dim, 0x7E57);
        let prepared = kernels
            .iter()
            .map(|&kernel| match kernel {
                F32Kernel::GemmCrate => Ok(None),
                packing => {
                    PreparedLinear::packed_f32_as(plan, packing, &weight, columns, in_dim).map(Some)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            kernels: kernels.to_vec(),
            prepared,
            weight,
            bias: pseudo_random(columns, 0xB1A5),
            input: pseudo_random(CLASS_ROWS[CLASSES - 1] * in_dim, 0x1207),
            columns,
            in_dim,
            best: vec![[None; CLASSES]; kernels.len()],
            rounds: 0,
            scratch: LinearScratch::default(),
            out: Vec::new(),
        })
    }

    /// Whether the warm-up and [`ROUNDS`] timed rounds have run.
    pub fn complete(&self) -> bool {
        self.rounds > ROUNDS
    }

    /// Runs one round, class by class, stopping at `deadline` (a class not reached keeps what
    /// earlier rounds measured); `false` when the deadline stopped it.
    pub fn round(&mut self, deadline: Instant) -> Result<bool> {
        let timed = self.rounds > 0;
        let n = self.kernels.len();
        for (class, &rows) in CLASS_ROWS.iter().enumerate() {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            for turn in 0..n {
                let k = (turn + self.rounds) % n;
                let elapsed = self.run(k, rows)?;
                if timed {
                    let best = &mut self.best[k][class];
                    *best = Some(best.map_or(elapsed, |b| b.min(elapsed)));
                }
            }
        }
        self.rounds += 1;
        Ok(true)
    }

    /// One multiplication of `rows` rows on kernel `k`, timed.
    fn run(&mut self, k: usize, rows: usize) -> Result<Duration> {
        let x = &self.input[..rows * self.in_dim];
        self.out.resize(rows * self.columns, 0.0);
        let epilogue = Epilogue::BiasAct {
            bias: &self.bias,
            act: Act::Identity,
        };
        let start = Instant::now();
        match &self.prepared[k] {
            Some(p) => p.forward(x, &mut self.out, Some(&epilogue), &mut self.scratch)?,
            None => linear_f32(x, &self.weight, self.in_dim, &mut self.out, Some(&epilogue))?,
        }
        Ok(start.elapsed())
    }

    /// Each kernel's fastest time per row and column in each class (`None` where no timed
    /// round reached the class).
    pub fn timings(&self) -> Vec<KernelTiming> {
        self.kernels
            .iter()
            .zip(&self.best)
            .map(|(&kernel, best)| KernelTiming {
                kernel,
                ns_per_row_column: std::array::from_fn(|class| {
                    let per = (CLASS_ROWS[class] * self.columns) as f64;
                    best[class].map(|d| d.as_nanos() as f64 / per)
                }),
            })
            .collect()
    }
}

/// What one weight shape runs: the packed copy it gets (none: the `gemm` crate at every row
/// count) and, per rows class, whether that copy multiplies (else the `gemm` crate does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F32Choice {
    pub packing: Option<F32Kernel>,
    pub packed: [bool; CLASSES],
}

impl F32Choice {
    /// Whether a multiplication of `rows` rows runs on the packed copy.
    pub fn packed_at(&self, rows: usize) -> bool {
        self.packing.is_some() && self.packed[rows_class(rows)]
    }

    /// The kernel that multiplies `rows` rows.
    pub fn kernel_at(&self, rows: usize) -> F32Kernel {
        match self.packing {
            Some(p) if self.packed[rows_class(rows)] => p,
            _ => F32Kernel::GemmCrate,
        }
    }
}

/// The fastest choice from the candidates' timings: for each packing, the classes' best times
/// (that packing or the `gemm` crate, whichever is faster in the class) summed; the packing
/// with the smallest sum, then per class the faster of it and the `gemm` crate. A kernel
/// replaces a preferred one (earlier in the list; packed before the `gemm` crate) only when
/// [`MARGIN`] faster. A class some candidate was not timed in keeps the packed kernel. `None`
/// when no packed candidate was timed.
pub fn choose_f32(timings: &[KernelTiming]) -> Option<F32Choice> {
    let gemm = timings.iter().find(|t| t.kernel == F32Kernel::GemmCrate);
    let class_choice = |packed: &KernelTiming, class: usize| -> (bool, f64) {
        let p = packed.ns_per_row_column[class];
        let g = gemm.and_then(|g| g.ns_per_row_column[class]);
        match (p, g) {
            (Some(p), Some(g)) if g < p * (1.0 - MARGIN) => (false, g),
            (Some(p), _) => (true, p),
            (None, _) => (true, f64::INFINITY),
        }
    };
    timings
        .iter()
        .filter(|t| t.kernel.packs())
        .map(|packed| {
            let classes: [(bool, f64); CLASSES] =
                std::array::from_fn(|class| class_choice(packed, class));
            let total: f64 = classes.iter().map(|c| c.1).sum();
            let choice = F32Choice {
                packing: Some(packed.kernel),
                packed: classes.map(|c| c.0),
            };
            (choice, total)
        })
        .fold(
            None,
            |best: Option<(F32Choice, f64)>, (choice, total)| match best {
                Some((_, t)) if t * (1.0 - MARGIN) <= total => best,
                _ => Some((choice, total)),
            },
        )
        .map(|(mut choice, _)| {
            if choice.packed.iter().all(|p| !p) {
                choice.packing = None;
            }
            choice
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_diff;
    use crate::{Avx512Mode, CpuFeatures};

    fn timing(kernel: F32Kernel, ns: [Option<f64>; CLASSES]) -> KernelTiming {
        KernelTiming {
            kernel,
            ns_per_row_column: ns,
        }
    }

    #[test]
    fn classes_split_at_the_geometric_means() {
        assert_eq!(rows_class(1), 0);
        assert_eq!(rows_class(45), 0);
        assert_eq!(rows_class(46), 1);
        assert_eq!(rows_class(128), 1);
        assert_eq!(rows_class(256), 1);
        assert_eq!(rows_class(257), 2);
        assert_eq!(rows_class(4096), 2);
        for (class, rows) in CLASS_ROWS.into_iter().enumerate() {
            assert_eq!(rows_class(rows), class);
        }
    }

    /// The AVX-512 case: the 512-bit kernel far ahead at small batches, the `gemm`
    /// crate ahead at large ones; the AVX2 kernel between.
    #[test]
    fn the_choice_mixes_a_packing_with_the_gemm_crate_per_class() {
        let timings = [
            timing(F32Kernel::Avx512, [Some(0.10), Some(0.08), Some(0.09)]),
            timing(F32Kernel::Avx2, [Some(0.14), Some(0.10), Some(0.085)]),
            timing(F32Kernel::GemmCrate, [Some(0.25), Some(0.12), Some(0.08)]),
        ];
        let choice = choose_f32(&timings).unwrap();
        assert_eq!(choice.packing, Some(F32Kernel::Avx512));
        assert_eq!(choice.packed, [true, true, false]);
        assert_eq!(choice.kernel_at(1), F32Kernel::Avx512);
        assert_eq!(choice.kernel_at(4096), F32Kernel::GemmCrate);

        // The AVX2 kernel wins where its sum is smaller.
        let timings = [
            timing(F32Kernel::Avx512, [Some(0.20), Some(0.20), Some(0.20)]),
            timing(F32Kernel::Avx2, [Some(0.10), Some(0.10), Some(0.10)]),
            timing(F32Kernel::GemmCrate, [Some(0.15), Some(0.15), Some(0.05)]),
        ];
        let choice = choose_f32(&timings).unwrap();
        assert_eq!(choice.packing, Some(F32Kernel::Avx2));
        assert_eq!(choice.packed, [true, true, false]);

        // The `gemm` crate everywhere: no packed copy at all.
        let timings = [
            timing(F32Kernel::Avx2, [Some(0.3), Some(0.3), Some(0.3)]),
            timing(F32Kernel::GemmCrate, [Some(0.1), Some(0.1), Some(0.1)]),
        ];
        let choice = choose_f32(&timings).unwrap();
        assert_eq!(choice.packing, None);
        assert!(!choice.packed_at(1) && !choice.packed_at(5000));
    }

    /// Classes past the deadline keep the preferred (first) packing.
    #[test]
    fn untimed_classes_keep_the_packed_kernel() {
        let timings = [
            timing(F32Kernel::Avx2, [Some(0.1), None, None]),
            timing(F32Kernel::GemmCrate, [Some(0.2), None, None]),
        ];
        let choice = choose_f32(&timings).unwrap();
        assert_eq!(choice.packing, Some(F32Kernel::Avx2));
        assert_eq!(choice.packed, [true; CLASSES]);
        assert_eq!(choose_f32(&timings[1..]), None);
        assert_eq!(choose_f32(&[]), None);
    }

    #[test]
    fn kernel_names_round_trip() {
        for k in F32Kernel::ALL {
            assert_eq!(k.name().parse::<F32Kernel>().unwrap(), k);
        }
        let err = "fast".parse::<F32Kernel>().unwrap_err().to_string();
        assert!(err.contains("fast"), "{err}");
    }

    #[test]
    fn candidates_follow_the_plan() {
        let cpu = CpuFeatures::detect();
        let plan = KernelPlan::new(cpu, Avx512Mode::Auto, true);
        let got = f32_candidates(&plan);
        if cpu.avx2_fma {
            assert_eq!(got.last(), Some(&F32Kernel::GemmCrate));
            assert_eq!(got.contains(&F32Kernel::Avx512), cpu.avx512f);
        } else {
            assert!(got.is_empty());
        }
        let off = KernelPlan::new(cpu, Avx512Mode::Off, true);
        assert!(!f32_candidates(&off).contains(&F32Kernel::Avx512));
        assert!(f32_candidates(&KernelPlan::new(cpu, Avx512Mode::Portable, true)).is_empty());
        assert!(f32_candidates(&KernelPlan::new(cpu, Avx512Mode::Auto, false)).is_empty());
        assert!(
            f32_candidates(&KernelPlan::new(CpuFeatures::NONE, Avx512Mode::Auto, true)).is_empty()
        );
    }

    /// The warm-up round times nothing; each later round adds a run of every (kernel, class);
    /// a past deadline stops a round before it runs anything.
    #[test]
    fn a_bench_completes_after_its_warm_up_and_rounds() {
        let plan = KernelPlan::detect();
        let candidates = f32_candidates(&plan);
        if candidates.is_empty() {
            return println!("no f32 kernels to choose among on this CPU");
        }
        let far = Instant::now() + Duration::from_secs(60);
        let mut bench = F32Bench::new(&plan, &candidates, (40, 24)).unwrap();
        assert!(!bench.round(Instant::now()).unwrap());
        assert!(bench.round(far).unwrap());
        let untimed = bench.timings();
        assert!(untimed
            .iter()
            .all(|t| t.ns_per_row_column == [None; CLASSES]));
        for round in 1..=ROUNDS {
            assert!(!bench.complete(), "complete after {round} rounds");
            assert!(bench.round(far).unwrap());
        }
        assert!(bench.complete());
        for t in bench.timings() {
            assert!(
                t.ns_per_row_column
                    .iter()
                    .all(|v| v.is_some_and(|v| v > 0.0)),
                "{t:?}"
            );
        }
    }

    /// Every candidate times every class (with a far deadline), and multiplies like the
    /// `gemm` crate; a past deadline times nothing.
    #[test]
    fn every_candidate_is_timed_and_agrees() {
        let plan = KernelPlan::detect();
        let (out_dim, in_dim) = (40, 24);
        let w = pseudo_random(out_dim * in_dim, 5);
        let x = pseudo_random(7 * in_dim, 6);
        let mut want = vec![0f32; 7 * out_dim];
        linear_f32(&x, &w, in_dim, &mut want, None).unwrap();
        let candidates = f32_candidates(&plan);
        let far = Instant::now() + Duration::from_secs(60);
        let timed = time_f32(&plan, &candidates, (out_dim, in_dim), far).unwrap();
        let past = time_f32(&plan, &candidates, (out_dim, in_dim), Instant::now()).unwrap();
        assert_eq!(timed.len(), candidates.len());
        for ((kernel, t), past) in candidates.into_iter().zip(timed).zip(past) {
            assert_eq!(t.kernel, kernel);
            assert!(
                t.ns_per_row_column
                    .iter()
                    .all(|v| v.is_some_and(|v| v > 0.0)),
                "{t:?}"
            );
            assert_eq!(past.ns_per_row_column, [None; CLASSES]);
            if kernel.packs() {
                let p = PreparedLinear::packed_f32_as(&plan, kernel, &w, out_dim, in_dim).unwrap();
                let mut got = vec![f32::NAN; want.len()];
                p.forward(&x, &mut got, None, &mut LinearScratch::default())
                    .unwrap();
                let diff = max_diff(&got, &want);
                println!("{kernel}: max |diff| {diff:.2e}");
                assert!(diff < 1e-5, "{kernel}: {diff}");
            }
        }
    }
}
