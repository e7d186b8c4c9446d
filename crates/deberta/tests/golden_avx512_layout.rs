//! The golden model cases again with the f32 linear layers in the AVX-512 kernel's layout
//! (`Avx512Mode::Portable`, the CLI's `DEBERTA_CPU_AVX512=portable`): on CPUs without AVX-512
//! its portable twin runs them, which `tools/avx512-emu` holds to `vfmadd231ps` bit for bit, so
//! this holds the AVX-512 f32 path to transformers on any CPU. (On AVX-512 CPUs the default
//! golden tests run the kernel itself.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use candle_core::Device;
use deberta::{Avx512Mode, DebertaV2Model, KernelOptions, LoadOptions, PathChoice};

#[test]
fn every_golden_model_case_in_the_avx512_layout() {
    let options = LoadOptions {
        kernels: KernelOptions {
            path: PathChoice::CpuFused,
            avx512: Avx512Mode::Portable,
            ..Default::default()
        },
        ..Default::default()
    };
    let dir = common::fixtures_dir().join("models/v3_buckets");
    let (model, _) = DebertaV2Model::from_pretrained_with(&dir, &Device::Cpu, options).unwrap();
    let kernel = model.plan().linear_kernel();
    assert!(kernel.contains("avx512"), "{kernel}");
    println!("f32 linear layers on: {kernel}");
    common::every_golden_model_case(options);
}
