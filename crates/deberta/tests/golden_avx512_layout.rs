//! The golden model cases again with the f32 linear layers in the AVX-512 kernel's layout
//! (`DEBERTA_CPU_AVX512=portable`): on CPUs without AVX-512 its portable twin runs them, which
//! `tools/avx512-emu` holds to `vfmadd231ps` bit for bit, so this holds the AVX-512 f32 path to
//! transformers on any CPU. (On AVX-512 CPUs the default golden tests run the kernel itself.)
//!
//! One test in its own binary, so setting the variable before any forward pass is race-free.

mod common;

use deberta::LinearFormat;

#[test]
fn every_golden_model_case_in_the_avx512_layout() {
    std::env::set_var("DEBERTA_CPU_AVX512", "portable");
    let kernel = deberta::linear_kernel(LinearFormat::F32);
    assert!(kernel.contains("avx512"), "{kernel}");
    println!("f32 linear layers on: {kernel}");
    common::every_golden_model_case();
}
