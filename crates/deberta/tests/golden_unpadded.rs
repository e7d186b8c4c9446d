//! Unpadded batches against padded ones: for every committed config variant
//! (`fixtures/models`) and every head case (`fixtures/heads`), a batch of sequences of mixed
//! lengths run through `forward_sequences` gives, per sequence, the padded run's real-token
//! outputs to 1e-5, on the fused CPU path (unpadded) and on the candle path (padded inside).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use candle_core::{Device, Tensor};
use deberta::{
    DebertaV2Model, ForwardOptions, HeadKind, Labels, ModelInput, PathChoice, Sequence, TaskModel,
    TaskOutput,
};

const TOLERANCE: f32 = 1e-5;

/// One generated sequence: ids and token type ids.
struct Owned {
    ids: Vec<u32>,
    types: Vec<u32>,
}

/// Sequences of mixed lengths up to `max_len` (the longest, the shortest, and some between,
/// out of order), ids drawn from `1..vocab`, type ids from `0..types` (zeros when 0).
fn sequences(max_len: usize, vocab: usize, types: usize, seed: u64) -> Vec<Owned> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n.max(1)
    };
    let lens = [
        max_len / 2 + 1,
        1,
        max_len,
        2,
        max_len.saturating_sub(3).max(1),
        5.min(max_len),
        max_len,
    ];
    lens.iter()
        .map(|&len| {
            let len = len.min(max_len).max(1);
            let ids = (0..len).map(|_| 1 + next(vocab - 1) as u32).collect();
            let types = (0..len).map(|_| next(types) as u32).collect();
            Owned { ids, types }
        })
        .collect()
}

fn borrowed(owned: &[Owned]) -> Vec<Sequence<'_>> {
    owned
        .iter()
        .map(|s| Sequence::new(&s.ids).with_token_type_ids(&s.types))
        .collect()
}

/// The same sequences right-padded (pad id 0) with an attention mask: `[N, L]`, or
/// `[N, 1, L]` for multiple choice.
fn padded_input(owned: &[Owned], choice_axis: bool) -> ModelInput {
    let max_len = owned.iter().map(|s| s.ids.len()).max().unwrap();
    let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for s in owned {
        let n = max_len - s.ids.len();
        ids.extend(s.ids.iter().copied().chain(std::iter::repeat_n(0, n)));
        types.extend(s.types.iter().copied().chain(std::iter::repeat_n(0, n)));
        mask.extend(std::iter::repeat_n(1u32, s.ids.len()).chain(std::iter::repeat_n(0, n)));
    }
    let shape: Vec<usize> = if choice_axis {
        vec![owned.len(), 1, max_len]
    } else {
        vec![owned.len(), max_len]
    };
    let t = |v: Vec<u32>| Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap();
    ModelInput::from_ids(t(ids))
        .with_attention_mask(t(mask))
        .with_token_type_ids(t(types))
}

/// Max |a - b| of two same-shaped tensors (f32), asserting the shapes match.
fn diff(label: &str, got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{label}: shape");
    let got = got.to_dtype(candle_core::DType::F32).unwrap();
    let want = want.to_dtype(candle_core::DType::F32).unwrap();
    common::max_abs_diff(&got, &want)
}

/// The fixture input's longest sequence (the generated batch's longest length).
fn fixture_len(dir: &std::path::Path, file: &str) -> usize {
    let inputs = common::ForwardInputs::from_file(dir.join(file), &Device::Cpu).unwrap();
    *inputs.input_ids.dims().last().unwrap()
}

fn model_cases() -> Vec<String> {
    manifest_names(&common::fixtures_dir().join("models/manifest.json"))
}

fn head_cases() -> Vec<String> {
    manifest_names(&common::fixtures_dir().join("heads/manifest.json"))
}

fn manifest_names(path: &std::path::Path) -> Vec<String> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every `fixtures/models` variant's backbone: unpadded last hidden states against the padded
/// run's real-token rows. Returns the number of sequences compared.
fn backbone_cases(path: PathChoice) -> usize {
    let mut compared = 0;
    let mut worst = 0f32;
    for (k, name) in model_cases().iter().enumerate() {
        let dir = common::fixtures_dir().join("models").join(name);
        let (model, _) =
            DebertaV2Model::from_pretrained_with(&dir, &Device::Cpu, common::on_path(path))
                .unwrap();
        assert_eq!(
            model.runs_unpadded(),
            path == PathChoice::CpuFused,
            "{name}"
        );
        let cfg = model.config();
        let max_len = fixture_len(&dir, "input.json");
        let owned = sequences(max_len, cfg.vocab_size, cfg.type_vocab_size, k as u64);
        let padded = model
            .forward(&padded_input(&owned, false), ForwardOptions::default())
            .unwrap()
            .last_hidden_state;
        let got = model.forward_sequences(&borrowed(&owned)).unwrap();
        assert_eq!(got.len(), owned.len(), "{name}");
        let mut case_worst = 0f32;
        for (i, (g, s)) in got.iter().zip(&owned).enumerate() {
            let want = padded
                .narrow(0, i, 1)
                .unwrap()
                .narrow(1, 0, s.ids.len())
                .unwrap();
            let d = diff(&format!("{name}/{i}"), g, &want);
            assert!(
                d <= TOLERANCE,
                "{name} sequence {i} (len {}): {d:.3e}",
                s.ids.len()
            );
            case_worst = case_worst.max(d);
            compared += 1;
        }
        let lens: Vec<usize> = owned.iter().map(|s| s.ids.len()).collect();
        println!("{name} ({path:?}, lens {lens:?}): max |diff| = {case_worst:.3e}");
        worst = worst.max(case_worst);
    }
    println!("backbone, {path:?}: {compared} sequences, worst max |diff| = {worst:.3e}");
    compared
}

#[test]
fn every_variant_unpadded_matches_padded_on_the_fused_path() {
    let compared = backbone_cases(PathChoice::CpuFused);
    assert!(compared >= 24 * 7, "only {compared} sequences compared");
}

#[test]
fn every_variant_forward_sequences_matches_padded_on_the_candle_path() {
    let compared = backbone_cases(PathChoice::Candle);
    assert!(compared >= 24 * 7, "only {compared} sequences compared");
}

/// The named outputs of one sequence's head output.
fn head_outputs(out: &TaskOutput) -> Vec<(&'static str, &Tensor)> {
    [
        ("logits", &out.logits),
        ("start_logits", &out.start_logits),
        ("end_logits", &out.end_logits),
        ("last_hidden_state", &out.last_hidden_state),
    ]
    .into_iter()
    .filter_map(|(n, t)| t.as_ref().map(|t| (n, t)))
    .collect()
}

/// Row `i` of a padded output, cut to `len` tokens where it is per token (rank > 2, or the
/// QA logits `[N, L]`).
fn padded_row(name: &str, t: &Tensor, i: usize, len: usize) -> Tensor {
    let row = t.narrow(0, i, 1).unwrap();
    let per_token = t.rank() == 3 || name.ends_with("start_logits") || name.ends_with("end_logits");
    if per_token {
        row.narrow(1, 0, len).unwrap()
    } else {
        row
    }
}

/// One head model: unpadded outputs against the padded run's. Returns (sequences, outputs)
/// compared.
fn head_case(label: &str, model: &TaskModel, max_len: usize, seed: u64) -> (usize, usize) {
    let cfg = model.config();
    let owned = sequences(max_len, cfg.vocab_size, cfg.type_vocab_size, seed);
    let choice_axis = model.kind() == HeadKind::MultipleChoice;
    let padded = model
        .forward(
            &padded_input(&owned, choice_axis),
            Labels::default(),
            ForwardOptions::default(),
        )
        .unwrap();
    let got = model.forward_sequences(&borrowed(&owned)).unwrap();
    assert_eq!(got.len(), owned.len(), "{label}");
    let want_named = head_outputs(&padded);
    assert!(!want_named.is_empty(), "{label}: no outputs");
    let (mut outputs, mut worst) = (0, 0f32);
    for (i, (g, s)) in got.iter().zip(&owned).enumerate() {
        let got_named = head_outputs(g);
        let names = |v: &[(&'static str, &Tensor)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(names(&got_named), names(&want_named), "{label}/{i}");
        for ((name, g), (_, w)) in got_named.iter().zip(&want_named) {
            let want = padded_row(name, w, i, s.ids.len());
            let d = diff(&format!("{label}/{i}/{name}"), g, &want);
            assert!(d <= TOLERANCE, "{label} sequence {i} {name}: {d:.3e}");
            worst = worst.max(d);
            outputs += 1;
        }
    }
    println!(
        "{label} ({}): {} sequences, max |diff| = {worst:.3e}",
        model.kind().cli_name(),
        owned.len()
    );
    (owned.len(), outputs)
}

/// Every `fixtures/heads` case (all five heads, v3 and conv configs), plus the bare model.
fn heads_cases(path: PathChoice) {
    let (mut sequences, mut outputs) = (0, 0);
    let mut kinds = Vec::new();
    for (k, name) in head_cases().iter().enumerate() {
        let dir = common::fixtures_dir().join("heads").join(name);
        let model =
            TaskModel::from_pretrained_with(&dir, None, &Device::Cpu, common::on_path(path))
                .unwrap();
        assert_eq!(
            model.runs_unpadded(),
            path == PathChoice::CpuFused,
            "{name}"
        );
        let max_len = fixture_len(&dir, "nolabels.input.json");
        let (s, o) = head_case(name, &model, max_len, 100 + k as u64);
        sequences += s;
        outputs += o;
        kinds.push(model.kind());
    }
    let dir = common::fixtures_dir().join("models/v3_buckets");
    let base = TaskModel::from_pretrained_with(
        &dir,
        Some(HeadKind::Base),
        &Device::Cpu,
        common::on_path(path),
    )
    .unwrap();
    let (s, o) = head_case("v3_buckets/base", &base, fixture_len(&dir, "input.json"), 7);
    sequences += s;
    outputs += o;
    kinds.push(HeadKind::Base);
    for kind in [
        HeadKind::Base,
        HeadKind::MaskedLm,
        HeadKind::SequenceClassification,
        HeadKind::TokenClassification,
        HeadKind::QuestionAnswering,
        HeadKind::MultipleChoice,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} not covered");
    }
    println!("heads, {path:?}: {sequences} sequences, {outputs} outputs compared");
    assert!(
        sequences >= 7 * 18 && outputs >= sequences,
        "{sequences} / {outputs}"
    );
}

#[test]
fn every_head_unpadded_matches_padded_on_the_fused_path() {
    heads_cases(PathChoice::CpuFused);
}

#[test]
fn every_head_forward_sequences_matches_padded_on_the_candle_path() {
    heads_cases(PathChoice::Candle);
}

/// Bad sequences are refused with errors naming the sequence.
#[test]
fn bad_sequences_are_named() {
    let dir = common::fixtures_dir().join("models/token_types_positions");
    let (model, _) = DebertaV2Model::from_pretrained_with(
        &dir,
        &Device::Cpu,
        common::on_path(PathChoice::CpuFused),
    )
    .unwrap();
    let cfg = model.config().clone();
    let ok = [1u32, 2, 3];
    let message = |seqs: &[Sequence]| model.forward_sequences(seqs).unwrap_err().to_string();
    assert!(message(&[]).contains("no sequences"));
    let empty = message(&[Sequence::new(&ok), Sequence::new(&[])]);
    assert!(
        empty.contains("sequence 1") && empty.contains("empty"),
        "{empty}"
    );
    let big = [cfg.vocab_size as u32];
    let vocab = message(&[Sequence::new(&big)]);
    assert!(
        vocab.contains("sequence 0") && vocab.contains("vocab_size"),
        "{vocab}"
    );
    let types = message(&[Sequence::new(&ok).with_token_type_ids(&[0, 1])]);
    assert!(types.contains("token_type_ids"), "{types}");
    if cfg.position_biased_input {
        let long = vec![1u32; cfg.max_position_embeddings + 1];
        let too_long = message(&[Sequence::new(&ok), Sequence::new(&long)]);
        assert!(too_long.contains("sequence 1") && too_long.contains("max_position_embeddings"));
    }
}

/// The bf16 and int8 linear-layer formats (activations rounded or quantised per token row,
/// so a row's result does not depend on its batch): unpadded equals padded there too.
#[test]
fn linear_formats_unpadded_match_padded() {
    let mut compared = 0;
    for name in ["v3_buckets", "conv_groups_gelu", "token_types_positions"] {
        let dir = common::fixtures_dir().join("models").join(name);
        for format in [deberta::LinearFormat::Bf16, deberta::LinearFormat::Int8] {
            let options = common::on_path(PathChoice::CpuFused);
            let (mut model, _) =
                DebertaV2Model::from_pretrained_with(&dir, &Device::Cpu, options).unwrap();
            model.set_linear_format(format).unwrap();
            let cfg = model.config();
            let max_len = fixture_len(&dir, "input.json");
            let owned = sequences(max_len, cfg.vocab_size, cfg.type_vocab_size, 3);
            let padded = model
                .forward(&padded_input(&owned, false), ForwardOptions::default())
                .unwrap()
                .last_hidden_state;
            let got = model.forward_sequences(&borrowed(&owned)).unwrap();
            let mut worst = 0f32;
            for (i, (g, s)) in got.iter().zip(&owned).enumerate() {
                let want = padded
                    .narrow(0, i, 1)
                    .unwrap()
                    .narrow(1, 0, s.ids.len())
                    .unwrap();
                let d = diff(&format!("{name}/{format}/{i}"), g, &want);
                assert!(d <= TOLERANCE, "{name} {format} sequence {i}: {d:.3e}");
                worst = worst.max(d);
                compared += 1;
            }
            println!("{name} ({format}): max |diff| = {worst:.3e}");
        }
    }
    assert_eq!(compared, 3 * 2 * 7);
}
