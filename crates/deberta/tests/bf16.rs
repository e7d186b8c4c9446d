//! `LinearFormat::Bf16`: the golden model cases with bf16 linear layers against transformers
//! running the same substitution (`scripts/gen_bf16_fixtures.py`: weights and inputs of the six
//! encoder linears rounded to bf16, f32 sums and bias, position projections f32), on every
//! kernel: the packed AVX2 one (or `vdpbf16ps` where the CPU has AVX512-BF16), the `gemm`-crate
//! fallback, and the `vdpbf16ps` path's pair layout on its portable twin (which
//! `tools/avx512-emu` holds to the instruction bit for bit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use candle_core::{safetensors, Device, Tensor};
use common::ForwardInputs;
use deberta::{
    Avx512Mode, DebertaV2Model, ForwardOptions, KernelOptions, LinearFormat, LoadOptions,
};

/// Same rounding on both sides, so the outputs agree to f32 accumulation order (the median
/// element within `BULK_ATOL`), except downstream of an input that lies within that order's
/// error of a bf16 rounding boundary and rounds the other way: one bf16 step (2^-8 relative)
/// in one input, which attention spreads over its sequence (up to ~20% of the elements here)
/// and which stays below `FLIP_ATOL`.
const BULK_ATOL: f32 = 1e-6;
const FLIP_ATOL: f32 = 1e-2;

/// The model cases `scripts/gen_bf16_fixtures.py` wrote bf16 references for.
fn cases() -> Vec<String> {
    let root = common::fixtures_dir().join("models");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name()?.to_str()?.to_string();
            path.join("expected_bf16.safetensors")
                .exists()
                .then_some(name)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "bf16 references missing: {names:?}");
    names
}

/// The median and the largest |a - b| over all elements.
fn median_and_max(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let mut d: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).collect();
    d.sort_by(f32::total_cmp);
    (d[d.len() / 2], d[d.len() - 1])
}

fn check_cases(kernels: KernelOptions) {
    let device = Device::Cpu;
    let mut worst = 0f32;
    let options = LoadOptions {
        kernels,
        ..Default::default()
    };
    let mut path = String::new();
    for name in cases() {
        let dir = common::fixtures_dir().join("models").join(&name);
        let (mut model, _) = DebertaV2Model::from_pretrained_with(&dir, &device, options).unwrap();
        let input = ForwardInputs::from_file(dir.join("input.json"), &device)
            .unwrap()
            .model_input();
        let load = |file: &str| {
            safetensors::load(dir.join(file), &device).unwrap()["last_hidden_state"].clone()
        };
        let (f32_want, bf16_want) = (
            load("expected.safetensors"),
            load("expected_bf16.safetensors"),
        );
        model.set_linear_format(LinearFormat::Bf16).unwrap();
        path = model.plan().linear_kernel().to_string();
        let got = model
            .forward(&input, ForwardOptions::default())
            .unwrap()
            .last_hidden_state;
        let (median, max) = median_and_max(&got, &bf16_want);
        let d_f32 = common::max_abs_diff(&got, &f32_want);
        println!(
            "{path} {name}: |diff| vs transformers bf16-linears median {median:.1e}, \
             max {max:.2e} (max vs f32 {d_f32:.2e})"
        );
        assert!(median < BULK_ATOL, "{path} {name}: median {median}");
        assert!(max < FLIP_ATOL, "{path} {name}: max {max}");
        // The bf16 path is really taken: rounding moves the outputs by ~1e-2 here.
        assert!(d_f32 > 1e-3, "{path} {name}: bf16 path not taken");
        worst = worst.max(max);
        // Back to f32: the transformers f32 outputs again.
        model.set_linear_format(LinearFormat::F32).unwrap();
        let back = model
            .forward(&input, ForwardOptions::default())
            .unwrap()
            .last_hidden_state;
        assert!(
            common::max_abs_diff(&back, &f32_want) < 1e-4,
            "{path} {name}: f32 again"
        );
    }
    println!("{path}: worst max |diff| vs transformers bf16-linears {worst:.2e}");
}

/// The default kernels (packed AVX2, or `vdpbf16ps` where the CPU has AVX512-BF16).
#[test]
fn bf16_outputs_match_transformers_with_bf16_linears() {
    check_cases(KernelOptions::default());
}

/// The `gemm`-crate fallback on bf16-rounded weights.
#[test]
fn bf16_on_the_gemm_crate_matches_transformers() {
    check_cases(KernelOptions {
        avx512: Avx512Mode::Off,
        packed: false,
        ..Default::default()
    });
}

/// The `vdpbf16ps` pair layout on its portable twin.
#[test]
fn bf16_in_the_avx512_layout_matches_transformers() {
    check_cases(KernelOptions {
        avx512: Avx512Mode::Portable,
        ..Default::default()
    });
}

#[test]
fn linear_format_names_round_trip() {
    for name in LinearFormat::NAMES {
        let format: LinearFormat = name.parse().unwrap();
        assert_eq!(format.to_string(), name);
    }
    let err = "fp16".parse::<LinearFormat>().unwrap_err().to_string();
    assert!(err.contains("fp16") && err.contains("bf16"), "{err}");
}
