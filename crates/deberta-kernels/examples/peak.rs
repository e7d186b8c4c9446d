//! The arithmetic peak of this CPU for the instructions our GEMMs are built from, per core and
//! on every core, measured: the ceiling a benchmark's GFLOPS (or int8 GMAC/s) is compared with.
//!
//! ```text
//! cargo run --release -p deberta-kernels --example peak [-- --threads N]
//! ```
//!
//! Each loop is the inner step of one of our micro-kernels with its loads from L1 and enough
//! independent accumulators (10: 5 broadcast rows x 2 loaded vectors, which with the operands fit
//! the 16 ymm registers without spills) to cover the instruction latencies, so its rate is what the
//! execution ports allow and nothing else: `vfmadd231ps` on 256 bits (the AVX2 f32 kernel) and on
//! 512 bits (the AVX-512 one), `vpmaddubsw` + `vpmaddwd` + `vpaddd` (the AVX2 int8 kernel) and
//! `vpdpbusd` (the VNNI one). A cloud VM does not expose its clock, so the figure is the rate
//! itself, measured where the benchmark runs.

use std::time::Instant;

/// Inner-loop iterations per thread.
const ITERS: u64 = 50_000_000;
/// Rows (broadcast values) and loaded vectors per iteration: `ROWS * COLS` accumulators.
const ROWS: usize = 5;
const COLS: usize = 2;

fn main() {
    let threads = std::env::args()
        .skip_while(|a| a != "--threads")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("per core, and on {threads} threads at once (best of 3 runs):");
    #[cfg(target_arch = "x86_64")]
    for step in x86::steps() {
        let one = best_rate(step, 1);
        let all = best_rate(step, threads);
        println!(
            "  {:42} {:7.1} {unit} per core, {:7.1} on {threads} threads",
            step.name,
            one,
            all,
            unit = step.unit
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("  (the loops are x86_64 only)");
}

/// The best of 3 runs of `step` on `threads` threads, in the step's unit per second / 1e9.
#[cfg(target_arch = "x86_64")]
fn best_rate(step: x86::Step, threads: usize) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|_| std::thread::spawn(move || (step.run)(ITERS)))
                .collect();
            let sink: i64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
            std::hint::black_box(sink);
            let work = threads as f64 * ITERS as f64 * (ROWS * COLS) as f64 * step.per_update;
            work / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{COLS, ROWS};

    /// One measured loop.
    #[derive(Clone, Copy)]
    pub struct Step {
        pub name: &'static str,
        pub unit: &'static str,
        /// Operations per accumulator update (FLOPs or multiply-adds).
        pub per_update: f64,
        pub run: fn(u64) -> i64,
    }

    /// The loops this CPU runs.
    pub fn steps() -> Vec<Step> {
        let mut steps = Vec::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            steps.push(Step {
                name: "f32 vfmadd231ps ymm (AVX2 kernel)",
                unit: "GFLOPS",
                per_update: 16.0,
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                run: |n| unsafe { fma256(n) },
            });
            steps.push(Step {
                name: "int8 vpmaddubsw+vpmaddwd+vpaddd (AVX2)",
                unit: "GMAC/s",
                per_update: 32.0,
                // SAFETY: the CPU has AVX2 (checked above).
                run: |n| unsafe { maddubs256(n) },
            });
        }
        if is_x86_feature_detected!("avx512f") {
            steps.push(Step {
                name: "f32 vfmadd231ps zmm (AVX-512 kernel)",
                unit: "GFLOPS",
                per_update: 32.0,
                // SAFETY: the CPU has AVX512F (checked above).
                run: |n| unsafe { fma512(n) },
            });
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
            steps.push(Step {
                name: "int8 vpdpbusd zmm (VNNI kernel)",
                unit: "GMAC/s",
                per_update: 64.0,
                // SAFETY: the CPU has AVX512F and AVX512-VNNI (checked above).
                run: |n| unsafe { dpbusd512(n) },
            });
        }
        steps
    }

    /// `ROWS * COLS` accumulators x `n`: `acc += broadcast(a) * b`, b loaded from L1 as the kernel does.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma256(n: u64) -> i64 {
        let (a_mem, b_mem) = ([1.0f32; ROWS], [0.5f32; 8 * COLS]);
        let mut acc = [_mm256_setzero_ps(); ROWS * COLS];
        for _ in 0..n {
            let (ap, bp) = std::hint::black_box((a_mem.as_ptr(), b_mem.as_ptr()));
            for r in 0..ROWS {
                // SAFETY: r < ROWS and 8h + 8 <= 8 * COLS: inside the arrays.
                let a = unsafe { _mm256_broadcast_ss(&*ap.add(r)) };
                for h in 0..COLS {
                    // SAFETY: as above.
                    let b = unsafe { _mm256_loadu_ps(bp.add(8 * h)) };
                    acc[COLS * r + h] = _mm256_fmadd_ps(a, b, acc[COLS * r + h]);
                }
            }
        }
        let s = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        _mm256_cvtss_f32(s) as i64
    }

    /// As [`fma256`] on 512 bits.
    #[target_feature(enable = "avx512f")]
    unsafe fn fma512(n: u64) -> i64 {
        let (a_mem, b_mem) = ([1.0f32; ROWS], [0.5f32; 16 * COLS]);
        let mut acc = [_mm512_setzero_ps(); ROWS * COLS];
        for _ in 0..n {
            let (ap, bp) = std::hint::black_box((a_mem.as_ptr(), b_mem.as_ptr()));
            for r in 0..ROWS {
                // SAFETY: r < ROWS and 16h + 16 <= 16 * COLS: inside the arrays.
                let a = unsafe { _mm512_set1_ps(*ap.add(r)) };
                for h in 0..COLS {
                    // SAFETY: as above.
                    let b = unsafe { _mm512_loadu_ps(bp.add(16 * h)) };
                    acc[COLS * r + h] = _mm512_fmadd_ps(a, b, acc[COLS * r + h]);
                }
            }
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(s) as i64
    }

    /// The AVX2 int8 kernel's step: u8 x i8 pairs to i16 (`vpmaddubsw`), pairs of those to i32
    /// (`vpmaddwd` by ones), added (`vpaddd`): 32 multiply-adds per update.
    #[target_feature(enable = "avx2")]
    unsafe fn maddubs256(n: u64) -> i64 {
        let (a_mem, b_mem) = ([0x0302_0103u32; ROWS], [7i8; 32 * COLS]);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); ROWS * COLS];
        for _ in 0..n {
            let (ap, bp) = std::hint::black_box((a_mem.as_ptr(), b_mem.as_ptr()));
            for r in 0..ROWS {
                // SAFETY: r < ROWS and 32h + 32 <= 32 * COLS: inside the arrays.
                let a = unsafe { _mm256_set1_epi32(*ap.add(r) as i32) };
                for h in 0..COLS {
                    // SAFETY: as above.
                    let b = unsafe { _mm256_loadu_si256(bp.add(32 * h).cast()) };
                    let pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones);
                    acc[COLS * r + h] = _mm256_add_epi32(acc[COLS * r + h], pairs);
                }
            }
        }
        let s = acc
            .iter()
            .fold(_mm256_setzero_si256(), |s, &v| _mm256_add_epi32(s, v));
        i64::from(_mm256_extract_epi32(s, 0))
    }

    /// The VNNI kernel's step: `vpdpbusd`, 64 multiply-adds per update.
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dpbusd512(n: u64) -> i64 {
        let (a_mem, b_mem) = ([0x0302_0103u32; ROWS], [7i8; 64 * COLS]);
        let mut acc = [_mm512_setzero_si512(); ROWS * COLS];
        for _ in 0..n {
            let (ap, bp) = std::hint::black_box((a_mem.as_ptr(), b_mem.as_ptr()));
            for r in 0..ROWS {
                // SAFETY: r < ROWS and 64h + 64 <= 64 * COLS: inside the arrays.
                let a = unsafe { _mm512_set1_epi32(*ap.add(r) as i32) };
                for h in 0..COLS {
                    // SAFETY: as above.
                    let b = unsafe { _mm512_loadu_si512(bp.add(64 * h).cast()) };
                    acc[COLS * r + h] = _mm512_dpbusd_epi32(acc[COLS * r + h], a, b);
                }
            }
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_si512(), |s, &v| _mm512_add_epi32(s, v));
        i64::from(_mm512_reduce_add_epi32(s))
    }
}
