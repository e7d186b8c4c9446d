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
    for name in CASES {
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
            let other = load_int8(&dir, avx512, false);
            let kernel = other.plan().linear_kernel();
            let got = other.forward(&input, ForwardOptions::default()).unwrap();
            let same = same_bits(&got.last_hidden_state, &want);
            println!("{name}: int8 on {kernel} equals the default int8 kernel bit for bit");
            assert!(same, "{name}: int8 on {kernel} differs");
        }
    }
}

/// With `int8_attention` the attention products run in int8 too: still within the int8
/// tolerance of transformers' f32 outputs, different from linear-only int8 (the path is
/// taken), and the same bits on every int8 kernel.
#[test]
fn int8_attention_products_stay_close_to_transformers_f32() {
    let device = Device::Cpu;
    for name in CASES {
        let dir = common::fixtures_dir().join("models").join(name);
        let input = ForwardInputs::from_file(dir.join("input.json"), &device)
            .unwrap()
            .model_input();
        let expected = safetensors::load(dir.join("expected.safetensors"), &device).unwrap();
        let want = &expected["last_hidden_state"];
        let linear_only = load_int8(&dir, Avx512Mode::Auto, false)
            .forward(&input, ForwardOptions::default())
            .unwrap();
        let model = load_int8(&dir, Avx512Mode::Auto, true);
        let products = model.plan().to_string();
        let out = model.forward(&input, ForwardOptions::default()).unwrap();
        let d8 = common::max_abs_diff(&out.last_hidden_state, want);
        let moved = common::max_abs_diff(&out.last_hidden_state, &linear_only.last_hidden_state);
        println!(
            "{name}: int8 with int8 attention products: max |diff| vs transformers f32 {d8:.2e}, \
             vs linear-only int8 {moved:.2e}"
        );
        assert!(d8 < INT8_ATOL, "{name}: {d8}");
        assert!(
            moved > 0.0,
            "{name}: int8 attention products not taken ({products})"
        );
        let bits = out.last_hidden_state.flatten_all().unwrap();
        let bits = bits.to_vec1::<f32>().unwrap();
        for avx512 in [Avx512Mode::Off, Avx512Mode::Portable] {
            let other = load_int8(&dir, avx512, true);
            let got = other.forward(&input, ForwardOptions::default()).unwrap();
            let kernel = other.plan().linear_kernel();
            assert!(
                same_bits(&got.last_hidden_state, &bits),
                "{name}: int8 attention on {kernel} differs"
            );
            println!("{name}: int8 attention on {kernel} equals the default kernel bit for bit");
        }
    }
}

/// The golden cases int8 runs on.
const CASES: [&str; 5] = [
    "v3_buckets",
    "separate_pos_proj",
    "c2p_only",
    "conv_groups_gelu",
    "embedding_size",
];

/// The model in `dir` with int8 linear layers (and int8 attention products with
/// `int8_attention`), its AVX-512 kernels per `avx512`.
fn load_int8(dir: &std::path::Path, avx512: Avx512Mode, int8_attention: bool) -> DebertaV2Model {
    let options = LoadOptions {
        kernels: KernelOptions {
            avx512,
            linear_format: LinearFormat::Int8,
            int8_attention,
            ..Default::default()
        },
        ..Default::default()
    };
    DebertaV2Model::from_pretrained_with(dir, &Device::Cpu, options)
        .unwrap()
        .0
}

/// Whether `t` holds exactly the values `want`, bit for bit.
fn same_bits(t: &candle_core::Tensor, want: &[f32]) -> bool {
    let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_bits() == b.to_bits())
}
