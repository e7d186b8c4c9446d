//! The measured f32 kernel choice (`TuneMode`), end to end on the two shipped models (hidden
//! 256: the golden fixtures' weights are under `MIN_TUNED_WEIGHT` and never measured): their
//! logits against transformers' (`fixtures/shipped`) with the kernels measured fresh, then again
//! with each choice forced through the cache file (the `gemm` crate at every row count, each
//! packed kernel at every row count, and a mix per rows class), so every kernel a measurement
//! can pick is held to transformers. One test in its own binary: it points
//! `DEBERTA_CACHE_DIR` at a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use candle_core::Device;
use deberta::{
    F32Kernel, ForwardOptions, KernelOptions, KernelPlan, Labels, LoadOptions, PathChoice,
    TaskModel, TuneMode,
};
use serde_json::Value;

const MODELS: [&str; 2] = ["deberta-v3-tiny-sentiment", "deberta-v3-tiny-en"];

/// The kernel a scenario makes fastest in each rows class.
type Winner = Box<dyn Fn(usize) -> F32Kernel>;

fn options(tune: TuneMode) -> LoadOptions {
    LoadOptions {
        kernels: KernelOptions {
            path: PathChoice::CpuFused,
            tune,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Rewrites every cached timing so that `winner(class)` is the fastest kernel in each class.
fn force(cache: &Path, winner: &Winner) {
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(cache).unwrap()).unwrap();
    let entries = file["entries"].as_array_mut().unwrap();
    assert!(!entries.is_empty());
    for entry in entries {
        for (kernel, ns) in entry["ns_per_row_column"].as_object_mut().unwrap() {
            let kernel: F32Kernel = kernel.parse().unwrap();
            for (class, v) in ns.as_array_mut().unwrap().iter_mut().enumerate() {
                *v = (if winner(class) == kernel { 0.1 } else { 1.0 }).into();
            }
        }
    }
    std::fs::write(cache, serde_json::to_string(&file).unwrap()).unwrap();
}

/// Loads `name` with `tune`, checks its logits against transformers' and returns the kernels
/// its linear layers run at 16, 128 and 512 rows (and whether they came from the cache).
fn check(name: &str, tune: TuneMode) -> (Vec<Vec<String>>, bool) {
    let fixture = common::fixtures_dir().join("shipped").join(name);
    let input = common::ForwardInputs::from_file(fixture.join("input.json"), &Device::Cpu).unwrap();
    let expected =
        candle_core::safetensors::load(fixture.join("expected.safetensors"), &Device::Cpu).unwrap();
    let dir = common::fixtures_dir().join("../models").join(name);
    let model = TaskModel::from_pretrained_with(dir, None, &Device::Cpu, options(tune)).unwrap();
    let logits = model
        .forward(
            &input.model_input(),
            Labels::default(),
            ForwardOptions::default(),
        )
        .unwrap()
        .logits
        .unwrap();
    let diff = common::max_abs_diff(&logits, &expected["logits"]);
    println!("{name}: max |logits - transformers| = {diff:.3e}");
    assert!(diff <= 1e-4, "{name}: {diff}");
    let tuning = model.kernel_tuning().unwrap().expect("a measured plan");
    assert_eq!(tuning.shapes.len(), 4, "{tuning:?}");
    let cached = tuning.shapes.iter().all(|s| s.cached);
    let kernels = tuning
        .shapes
        .iter()
        .map(|s| {
            deberta::KERNEL_CLASS_ROWS
                .map(|r| s.choice.kernel_at(r).name().to_string())
                .to_vec()
        })
        .collect();
    (kernels, cached)
}

#[test]
fn every_kernel_a_measurement_can_choose_matches_transformers() {
    let dir = std::env::temp_dir().join(format!("deberta-kernel-tuning-{}", std::process::id()));
    std::env::set_var("DEBERTA_CACHE_DIR", &dir);
    let cache = dir.join(deberta::KERNEL_CACHE_FILE);
    let candidates = deberta::f32_candidates(&KernelPlan::detect());
    if candidates.len() < 2 {
        println!("nothing to choose among on this CPU ({candidates:?}): nothing to test");
        return;
    }
    println!("candidates: {candidates:?}");
    for name in MODELS {
        let (_, cached) = check(name, TuneMode::Fresh);
        assert!(!cached, "{name}: Fresh read the cache");
    }
    assert!(cache.exists(), "{} not written", cache.display());

    let packed: Vec<F32Kernel> = candidates.iter().copied().filter(|k| k.packs()).collect();
    let mut scenarios: Vec<(String, Winner)> = vec![(
        "gemm crate everywhere".into(),
        Box::new(|_| F32Kernel::GemmCrate),
    )];
    for &k in &packed {
        scenarios.push((format!("{k} everywhere"), Box::new(move |_| k)));
    }
    let first = packed[0];
    scenarios.push((
        format!("{first} at 16 and 512 rows, gemm crate at 128"),
        Box::new(move |class| {
            if class == 1 {
                F32Kernel::GemmCrate
            } else {
                first
            }
        }),
    ));
    for (scenario, winner) in &scenarios {
        println!("== {scenario}");
        force(&cache, winner);
        let want: Vec<String> = (0..3).map(|c| winner(c).name().to_string()).collect();
        for name in MODELS {
            let (kernels, cached) = check(name, TuneMode::Cached);
            assert!(cached, "{name}: {scenario}: not read from the cache");
            for k in kernels {
                assert_eq!(k, want, "{name}: {scenario}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
