//! The measured f32 kernel choice (`TuneMode`), end to end: every golden model case with the
//! kernels measured fresh, then again with each choice forced through the cache file (the
//! `gemm` crate at every row count, each packed kernel at every row count, and a mix per rows
//! class), so every kernel a measurement can pick is held to transformers. One test in its own
//! binary: it points `DEBERTA_CACHE_DIR` at a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use candle_core::Device;
use deberta::{
    DebertaV2Model, F32Kernel, ForwardOptions, KernelOptions, KernelPlan, LoadOptions, ModelInput,
    PathChoice, TuneMode,
};
use serde_json::Value;

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
fn force(cache: &std::path::Path, winner: impl Fn(usize) -> F32Kernel) {
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

/// The kernels `v3_buckets`' four linear layers run at 16, 128 and 512 rows after one forward.
fn loaded_choice(tune: TuneMode) -> Vec<Vec<String>> {
    let dir = common::fixtures_dir().join("models/v3_buckets");
    let (model, _) =
        DebertaV2Model::from_pretrained_with(&dir, &Device::Cpu, options(tune)).unwrap();
    let ids = candle_core::Tensor::new(&[[1u32, 5, 9, 2]], &Device::Cpu).unwrap();
    model
        .forward(&ModelInput::from_ids(ids), ForwardOptions::default())
        .unwrap();
    let tuning = model.kernel_tuning().unwrap().expect("a measured plan");
    assert!(tuning.shapes.iter().all(|s| s.cached), "{tuning:?}");
    tuning
        .shapes
        .iter()
        .map(|s| {
            [16, 128, 512]
                .map(|r| s.choice.kernel_at(r).name().to_string())
                .to_vec()
        })
        .collect()
}

#[test]
fn every_kernel_a_measurement_can_choose_matches_transformers() {
    let dir = std::env::temp_dir().join(format!("deberta-kernel-tuning-{}", std::process::id()));
    std::env::set_var("DEBERTA_CACHE_DIR", &dir);
    let cache = dir.join(deberta::KERNEL_CACHE_FILE);
    let candidates = deberta::f32_candidates(&KernelPlan::detect());
    if candidates.len() < 2 {
        println!("nothing to choose among on this CPU ({candidates:?}): golden cases untuned only");
        common::every_golden_model_case(options(TuneMode::Off));
        return;
    }
    println!("candidates: {candidates:?}");
    common::every_golden_model_case(options(TuneMode::Fresh));
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
    for (name, winner) in &scenarios {
        println!("== {name}");
        force(&cache, winner);
        let want: Vec<String> = (0..3).map(|c| winner(c).name().to_string()).collect();
        for kernels in loaded_choice(TuneMode::Cached) {
            assert_eq!(kernels, want, "{name}");
        }
        common::every_golden_model_case(options(TuneMode::Cached));
    }
    std::fs::remove_dir_all(&dir).ok();
}
