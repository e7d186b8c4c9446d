//! The models shipped under `models/` (trained by `deberta train`, see their model cards):
//! transformers' outputs on them (`scripts/gen_shipped_fixtures.py`, which also checks that
//! transformers loads each with no missing or unexpected keys) on both execution paths, and the
//! sentiment model's answers on sentences written for this test (not from its data).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use candle_core::{safetensors, Device, Tensor};
use deberta::{
    ForwardOptions, KernelOptions, Labels, LoadOptions, ModelInput, PathChoice, TaskModel,
};
use deberta_tasks::{ClassifyInput, ClassifyOptions, ClassifyOutput, TextClassification};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ids(value: &serde_json::Value, key: &str) -> Tensor {
    let rows: Vec<Vec<u32>> = serde_json::from_value(value[key].clone()).unwrap();
    let (b, l) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (b, l), &Device::Cpu).unwrap()
}

fn check_against_transformers(name: &str) {
    let fixture = repo().join("fixtures/shipped").join(name);
    let input: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("input.json")).unwrap())
            .unwrap();
    let model_input = ModelInput::from_ids(ids(&input, "input_ids"))
        .with_attention_mask(ids(&input, "attention_mask"));
    let expected = safetensors::load(fixture.join("expected.safetensors"), &Device::Cpu).unwrap();
    for path in [PathChoice::CpuFused, PathChoice::Candle] {
        let options = LoadOptions {
            kernels: KernelOptions {
                path,
                ..KernelOptions::default()
            },
            ..LoadOptions::default()
        };
        let model = TaskModel::from_pretrained_with(
            repo().join("models").join(name),
            None,
            &Device::Cpu,
            options,
        )
        .unwrap();
        assert!(
            model.report().initialized.is_empty(),
            "{name}: {:?}",
            model.report()
        );
        assert!(
            model.report().unexpected.is_empty(),
            "{name}: {:?}",
            model.report()
        );
        let logits = model
            .forward(&model_input, Labels::default(), ForwardOptions::default())
            .unwrap()
            .logits
            .unwrap();
        let diff = (&logits - &expected["logits"])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!("{name} ({path:?}): max |logits - transformers| = {diff:.3e}");
        assert!(diff <= 1e-4, "{name} ({path:?}): {diff}");
    }
}

#[test]
fn the_shipped_mlm_model_gives_transformers_outputs() {
    check_against_transformers("deberta-v3-tiny-en");
}

#[test]
fn the_shipped_sentiment_model_gives_transformers_outputs() {
    check_against_transformers("deberta-v3-tiny-sentiment");
}

const POSITIVE: [&str; 10] = [
    "What a wonderful, moving film.",
    "I absolutely loved this book, it made my week.",
    "The staff were kind and the room was spotless.",
    "A brilliant performance from the whole cast.",
    "This is the best pizza I have ever eaten.",
    "Great value, fast delivery and it works perfectly.",
    "Such a beautiful and uplifting story.",
    "I am so happy with this purchase.",
    "The concert was fantastic and the crowd was amazing.",
    "An excellent, thoughtful and funny novel.",
];

const NEGATIVE: [&str; 10] = [
    "The service was slow and the food was cold.",
    "What a boring, pointless waste of two hours.",
    "It broke after one day and support never answered.",
    "The plot is dull and the acting is terrible.",
    "I hated every minute of this awful show.",
    "The room was dirty and the staff were rude.",
    "A disappointing, lazy and ugly film.",
    "This is the worst phone I have ever owned.",
    "The news today is sad and frightening.",
    "Horrible taste, I threw it away.",
];

#[test]
fn the_shipped_sentiment_model_classifies_clear_sentences() {
    let pipeline = TextClassification::from_dir(
        repo().join("models/deberta-v3-tiny-sentiment"),
        &Device::Cpu,
    )
    .unwrap();
    let mut right = 0;
    for (texts, want) in [(POSITIVE, "positive"), (NEGATIVE, "negative")] {
        for text in texts {
            let input = ClassifyInput {
                text: text.to_string(),
                text_pair: None,
            };
            let out = pipeline.run(&input, &ClassifyOptions::default()).unwrap();
            let best = match out {
                ClassifyOutput::One(s) => s,
                ClassifyOutput::List(list) => list.into_iter().next().unwrap(),
            };
            let ok = best.label == want;
            right += usize::from(ok);
            println!(
                "{:>5} {want:>8} -> {} {:.3}: {text}",
                if ok { "ok" } else { "WRONG" },
                best.label,
                best.score
            );
        }
    }
    println!("{right} of 20 right");
    assert!(
        right >= 18,
        "only {right} of 20 clear sentences classified right"
    );
}
