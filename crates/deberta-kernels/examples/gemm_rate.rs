//! The rate of the packed AVX2 f32 linear kernel ([`deberta_kernels::sgemm::PackedLinear`]) on
//! v3-base's four linear-layer shapes at 128, 512 and 4,096 rows, in GFLOPS, on the global
//! rayon pool (all cores, or `RAYON_NUM_THREADS`): the figure to set beside `peak`'s ceiling.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p deberta-kernels --example gemm_rate
//! ```

use std::time::Instant;

use deberta_kernels::sgemm::PackedLinear;

/// (in, out) of the fused QKV projection, the attention output, the FFN up and down layers.
const SHAPES: [(usize, usize); 4] = [(768, 2304), (768, 768), (768, 3072), (3072, 768)];
/// About this many FLOPs per timed run.
const WORK: usize = 4_000_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !deberta_kernels::sgemm::available() {
        println!("this CPU lacks AVX2 + FMA: the packed kernel does not run here");
        return Ok(());
    }
    println!("{} threads, best of 5 runs:", rayon::current_num_threads());
    for rows in [128usize, 512, 4096] {
        for (k, n) in SHAPES {
            let w = values(n * k, 7919);
            let x = values(rows * k, 104_729);
            let mut out = vec![0f32; rows * n];
            let packed = PackedLinear::new(&w, n, k)?;
            packed.forward(&x, &mut out, None)?;
            let reps = (WORK / (2 * rows * k * n)).max(3);
            let mut best = f64::MAX;
            for _ in 0..5 {
                let start = Instant::now();
                for _ in 0..reps {
                    packed.forward(&x, &mut out, None)?;
                }
                best = best.min(start.elapsed().as_secs_f64() / reps as f64);
            }
            let gflops = 2.0 * (rows * k * n) as f64 / best / 1e9;
            println!("  rows {rows:5} in {k:5} out {n:5}: {gflops:6.1} GFLOPS");
        }
    }
    Ok(())
}

/// `n` values in [-0.5, 0.5) from a multiplicative pattern.
fn values(n: usize, step: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (i * step % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}
