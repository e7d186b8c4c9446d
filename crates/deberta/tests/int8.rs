//! `quantize_int8`: the golden model cases with int8 linear layers stay close to transformers'
//! f32 outputs (a loose, explicit tolerance: int8 is an approximation), and the int8 path is
//! really taken (the outputs differ from f32).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use candle_core::{safetensors, Device};
use common::ForwardInputs;
use deberta::{
    Avx512Mode, DebertaV2Model, ForwardOptions, KernelOptions, LinearFormat, LoadOptions,
};

/// Hidden states are LayerNorm outputs of size ~1; int8 with per-row / per-channel scales moves
/// them by ~1e-2 on these random tiny models.
const INT8_ATOL: f32 = 0.1;

#[test]
fn int8_outputs_stay_close_to_transformers_f32() {
    let device = Device::Cpu;
    for name in [
        "v3_buckets",
        "separate_pos_proj",
        "c2p_only",
        "conv_groups_gelu",
        "embedding_size",
    ] {
        let dir = common::fixtures_dir().join("models").join(name);
        let (mut model, _) = DebertaV2Model::from_pretrained(&dir, &device).unwrap();
        let input = ForwardInputs::from_file(dir.join("input.json"), &device)
            .unwrap()
            .model_input();
        let expected = safetensors::load(dir.join("expected.safetensors"), &device).unwrap();
        let want = &expected["last_hidden_state"];
        let f32_out = model.forward(&input, ForwardOptions::default()).unwrap();
        model.quantize_int8().unwrap();
        let int8_out = model.forward(&input, ForwardOptions::default()).unwrap();
        let (d32, d8) = (
            common::max_abs_diff(&f32_out.last_hidden_state, want),
            common::max_abs_diff(&int8_out.last_hidden_state, want),
        );
        println!("{name}: max |diff| vs transformers f32: f32 {d32:.2e}, int8 {d8:.2e}");
        assert!(d32 < 1e-4, "{name}: f32 {d32}");
        assert!(d8 < INT8_ATOL, "{name}: int8 {d8}");
        assert!(d8 > d32, "{name}: int8 path not taken");

        // Every int8 kernel gives the same exact sums, so the same outputs bit for bit:
        // `vpdpbusd` (where the CPU has AVX512-VNNI; `0` rules it out), `vpmaddubsw` (AVX2) and
        // plain Rust (`portable`).
        let want = int8_out.last_hidden_state.flatten_all().unwrap();
        let want = want.to_vec1::<f32>().unwrap();
        for avx512 in [Avx512Mode::Off, Avx512Mode::Portable] {
            let options = LoadOptions {
                kernels: KernelOptions {
                    avx512,
                    linear_format: LinearFormat::Int8,
                    ..Default::default()
                },
                ..Default::default()
            };
            let (other, _) = DebertaV2Model::from_pretrained_with(&dir, &device, options).unwrap();
            let kernel = other.plan().linear_kernel();
            let got = other.forward(&input, ForwardOptions::default()).unwrap();
            let got = got.last_hidden_state.flatten_all().unwrap();
            let same = got
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            println!("{name}: int8 on {kernel} equals the default int8 kernel bit for bit");
            assert!(same, "{name}: int8 on {kernel} differs");
        }
    }
}
