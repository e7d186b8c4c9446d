//! Criterion microbenchmarks on v3-base geometry (hidden 768, 12 heads, 256 buckets) with
//! random weights, CPU: embeddings plus one encoder layer on the candle path (the oracle the
//! fused path replaced, and the path training runs on) and on the fused path, f32, int8 and
//! bf16.
//!
//! `cargo bench -p deberta --bench layer`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use deberta::weights::LoadState;
use deberta::{
    Checkpoint, DebertaV2Config, DebertaV2Model, ForwardOptions, KernelOptions, LinearFormat,
    LoadOptions, ModelInput, PathChoice, WeightFormat, Weights,
};

const HIDDEN: usize = 768;

fn config() -> DebertaV2Config {
    DebertaV2Config::from_json_str(
        r#"{"vocab_size": 1000, "hidden_size": 768, "num_hidden_layers": 1, "num_attention_heads": 12,
            "intermediate_size": 3072, "relative_attention": true, "position_buckets": 256,
            "norm_rel_ebd": "layer_norm", "share_att_key": true, "pos_att_type": "p2c|c2p",
            "position_biased_input": false, "max_position_embeddings": 512}"#,
    )
    .unwrap()
}

/// A random one-layer checkpoint on disk (names and shapes as transformers saves them).
fn checkpoint(dir: &std::path::Path) -> Checkpoint {
    let dev = Device::Cpu;
    let mut t = HashMap::new();
    let mut add = |name: &str, shape: &[usize]| {
        t.insert(
            name.to_string(),
            Tensor::randn(0f32, 0.05, shape, &dev).unwrap(),
        );
    };
    add("embeddings.word_embeddings.weight", &[1000, HIDDEN]);
    add("encoder.rel_embeddings.weight", &[512, HIDDEN]);
    for n in [
        "embeddings.LayerNorm",
        "encoder.LayerNorm",
        "encoder.layer.0.attention.output.LayerNorm",
        "encoder.layer.0.output.LayerNorm",
    ] {
        add(&format!("{n}.weight"), &[HIDDEN]);
        add(&format!("{n}.bias"), &[HIDDEN]);
    }
    for (n, out, inp) in [
        ("attention.self.query_proj", HIDDEN, HIDDEN),
        ("attention.self.key_proj", HIDDEN, HIDDEN),
        ("attention.self.value_proj", HIDDEN, HIDDEN),
        ("attention.output.dense", HIDDEN, HIDDEN),
        ("intermediate.dense", 3072, HIDDEN),
        ("output.dense", HIDDEN, 3072),
    ] {
        add(&format!("encoder.layer.0.{n}.weight"), &[out, inp]);
        add(&format!("encoder.layer.0.{n}.bias"), &[out]);
    }
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&t, &path).unwrap();
    Checkpoint::from_files(&[path], WeightFormat::Safetensors).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let cfg = config();
    let dev = Device::Cpu;
    let state = LoadState::default();
    let w = Weights::new(&ckpt, &state, &dev);
    let model = DebertaV2Model::load(&w, &cfg).unwrap();
    let mut model_int8 = DebertaV2Model::load(&w, &cfg).unwrap();
    model_int8.quantize_int8().unwrap();
    let mut model_bf16 = DebertaV2Model::load(&w, &cfg).unwrap();
    model_bf16.set_linear_format(LinearFormat::Bf16).unwrap();
    let candle_state = LoadState::with_options(LoadOptions {
        kernels: KernelOptions {
            path: PathChoice::Candle,
            ..Default::default()
        },
        ..Default::default()
    });
    let candle_w = Weights::new(&ckpt, &candle_state, &dev);
    let model_candle = DebertaV2Model::load(&candle_w, &cfg).unwrap();

    let mut group = c.benchmark_group("cpu_f32");
    group.sample_size(10);
    for (b, l) in [(1usize, 128usize), (8, 128), (1, 512)] {
        group.throughput(Throughput::Elements((b * l) as u64));
        let ids = Tensor::ones((b, l), DType::U32, &dev).unwrap();
        let input = ModelInput::from_ids(ids);
        group.bench_with_input(
            BenchmarkId::new("embeddings_plus_one_layer", format!("{b}x{l}")),
            &(),
            |bench, _| bench.iter(|| model.forward(&input, ForwardOptions::default()).unwrap()),
        );
        for (name, m) in [
            ("embeddings_plus_one_layer_candle_path", &model_candle),
            ("embeddings_plus_one_layer_int8", &model_int8),
            ("embeddings_plus_one_layer_bf16", &model_bf16),
        ] {
            group.bench_with_input(
                BenchmarkId::new(name, format!("{b}x{l}")),
                &(),
                |bench, _| bench.iter(|| m.forward(&input, ForwardOptions::default()).unwrap()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
