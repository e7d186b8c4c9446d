//! Golden tests of the five heads against transformers 5.x: logits and every loss rule, on a
//! v3-style and a conv-layer config, with padding (`fixtures/heads`, `scripts/gen_fixtures.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use candle_core::{safetensors, Device, Tensor};
use common::ForwardInputs;
use deberta::{ForwardOptions, HeadKind, Labels, ModelInput, PathChoice, TaskModel, TaskOutput};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn case_dir(name: &str) -> std::path::PathBuf {
    common::fixtures_dir().join("heads").join(name)
}

fn run(model: &TaskModel, dir: &Path, run: &str) -> TaskOutput {
    let dev = Device::Cpu;
    let inputs = ForwardInputs::from_file(dir.join(format!("{run}.input.json")), &dev).unwrap();
    let input = inputs.model_input();
    let labels = inputs.labels();
    let opts = ForwardOptions {
        output_hidden_states: true,
        output_attentions: false,
    };
    model.forward(&input, labels, opts).unwrap()
}

fn outputs_by_name(out: &TaskOutput) -> Vec<(String, Tensor)> {
    let mut named = Vec::new();
    for (name, t) in [
        ("logits", &out.logits),
        ("start_logits", &out.start_logits),
        ("end_logits", &out.end_logits),
    ] {
        if let Some(t) = t {
            named.push((name.to_string(), t.clone()));
        }
    }
    if let Some(loss) = &out.loss {
        named.push(("loss".into(), loss.reshape(1).unwrap()));
    }
    for (i, h) in out.hidden_states.iter().flatten().enumerate() {
        named.push((format!("hidden_states.{i}"), h.clone()));
    }
    named
}

fn check_case(name: &str, path: PathChoice) {
    let dir = case_dir(name);
    let model =
        TaskModel::from_pretrained_with(&dir, None, &Device::Cpu, common::on_path(path)).unwrap();
    assert_eq!(model.plan().path_name(), common::path_name(path));
    assert!(
        model.report().unexpected.is_empty() && model.report().initialized.is_empty(),
        "{name}: {:?}",
        model.report()
    );
    let manifest = manifest();
    let entry = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    assert_eq!(model.kind().class_name(), entry["class"]);
    for run_name in entry["runs"].as_array().unwrap() {
        let run_name = run_name.as_str().unwrap();
        let expected = safetensors::load(
            dir.join(format!("{run_name}.expected.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let got = outputs_by_name(&run(&model, &dir, run_name));
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        for key in expected.keys() {
            assert!(
                got_names.contains(&key.as_str()),
                "{name}/{run_name}: no output {key}"
            );
        }
        for (key, tensor) in &got {
            let exp = expected
                .get(key)
                .unwrap_or_else(|| panic!("{name}/{run_name}: unexpected output {key}"));
            let label = format!("{name}/{}/{run_name}/{key}", common::path_name(path));
            common::assert_close(&label, tensor, exp, ATOL, RTOL);
        }
    }
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(case_dir("manifest.json")).unwrap()).unwrap()
}

macro_rules! golden {
    ($($case:ident),* $(,)?) => {
        $(
            /// The case on each execution path.
            mod $case {
                use super::*;
                #[test]
                fn cpu_fused() {
                    check_case(stringify!($case), PathChoice::CpuFused);
                }
                #[test]
                fn candle() {
                    check_case(stringify!($case), PathChoice::Candle);
                }
            }
        )*

        #[test]
        fn every_head_fixture_has_a_test() {
            let tested = [$(stringify!($case)),*];
            for case in manifest()["cases"].as_array().unwrap() {
                assert!(tested.contains(&case["name"].as_str().unwrap()), "{} untested", case["name"]);
            }
        }
    };
}

golden!(
    mlm_legacy_v3,
    mlm_legacy_conv_embedding_size,
    mlm_lm_predictions_v3,
    mlm_lm_predictions_conv,
    mlm_lm_predictions_under_legacy_true,
    seq_v3,
    seq_conv,
    seq_mse_one_label,
    seq_problem_regression,
    seq_problem_single_label,
    seq_problem_multi_label,
    tok_v3,
    tok_conv,
    qa_v3,
    qa_conv,
    mc_v3,
    mc_conv,
);

/// `save_pretrained` writes exactly the tensors transformers' own `save_pretrained` wrote for
/// the case (names, shapes, dtype f32): what transformers needs to load our save with no missing
/// or unexpected keys (`scripts/gen_fixtures.py` loads every Rust save back with transformers
/// and fails when any key is missing or unexpected; `save_roundtrip.json` records that run).
#[test]
fn rust_saves_hold_exactly_the_tensors_transformers_saves() {
    let cases = manifest()["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 17, "{} head cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dir = case_dir(name);
        let model = TaskModel::from_pretrained(&dir, None, &Device::Cpu).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        model.save_pretrained(tmp.path()).unwrap();
        let theirs = safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let ours = safetensors::load(tmp.path().join("model.safetensors"), &Device::Cpu).unwrap();
        // Ours is theirs less what the loader set aside: tensors on transformers' ignore lists
        // and the masked-LM decoder tied to the word embeddings (transformers saves neither
        // back either when it re-saves).
        let report = model.report();
        for k in ours.keys() {
            assert!(
                theirs.contains_key(k),
                "{name}: we wrote {k}, transformers did not"
            );
        }
        for k in theirs.keys().filter(|k| !ours.contains_key(*k)) {
            let tied = k.ends_with("decoder.weight");
            assert!(
                tied || report.ignored.contains(k),
                "{name}: transformers wrote {k}, we did not"
            );
        }
        for (k, t) in &ours {
            assert_eq!(t.dims(), theirs[k].dims(), "{name}/{k}");
            assert_eq!(t.dtype(), candle_core::DType::F32, "{name}/{k}");
        }
    }
}

#[test]
fn save_pretrained_round_trips_in_rust() {
    for name in [
        "mlm_legacy_v3",
        "mlm_lm_predictions_under_legacy_true",
        "seq_conv",
        "qa_v3",
        "mc_v3",
    ] {
        let dir = case_dir(name);
        let model = TaskModel::from_pretrained(&dir, None, &Device::Cpu).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        model.save_pretrained(tmp.path()).unwrap();
        let again = TaskModel::from_pretrained(tmp.path(), None, &Device::Cpu).unwrap();
        assert!(again.report().unexpected.is_empty() && again.report().initialized.is_empty());
        let a = outputs_by_name(&run(&model, &dir, "nolabels"));
        let b = outputs_by_name(&run(&again, &dir, "nolabels"));
        for ((ka, ta), (kb, tb)) in a.iter().zip(&b) {
            assert_eq!(ka, kb);
            assert_eq!(
                common::assert_close(&format!("{name} resaved/{ka}"), ta, tb, 0.0, 0.0),
                0.0
            );
        }
    }
}

#[test]
fn a_head_loads_from_a_bare_model_and_initialises_its_own_weights() {
    let bare = common::fixtures_dir().join("models/v3_buckets");
    let model =
        TaskModel::from_pretrained(&bare, Some(HeadKind::SequenceClassification), &Device::Cpu)
            .unwrap();
    let mut init = model.report().initialized.clone();
    init.sort();
    assert_eq!(
        init,
        [
            "classifier.bias",
            "classifier.weight",
            "pooler.dense.bias",
            "pooler.dense.weight"
        ]
    );
    assert!(model.report().unexpected.is_empty());
    // The backbone is the bare model's: hidden states equal the bare model's golden output.
    let expected = safetensors::load(bare.join("expected.safetensors"), &Device::Cpu).unwrap();
    let inputs = ForwardInputs::from_file(bare.join("input.json"), &Device::Cpu).unwrap();
    let input = ModelInput {
        input_ids: inputs.input_ids,
        attention_mask: inputs.attention_mask,
        token_type_ids: None,
        position_ids: None,
    };
    let opts = ForwardOptions {
        output_hidden_states: true,
        output_attentions: false,
    };
    let out = model.forward(&input, Labels::default(), opts).unwrap();
    let last = out.hidden_states.unwrap().pop().unwrap();
    common::assert_close(
        "bare->seq backbone",
        &last,
        &expected["last_hidden_state"],
        ATOL,
        RTOL,
    );
    // Saving writes the backbone under `deberta.` so transformers finds it.
    let tmp = tempfile::tempdir().unwrap();
    model.save_pretrained(tmp.path()).unwrap();
    let saved = safetensors::load(tmp.path().join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(
        saved.contains_key("deberta.encoder.rel_embeddings.weight")
            && saved.contains_key("classifier.weight")
    );
}

#[test]
fn a_head_loads_from_another_heads_checkpoint() {
    let model = TaskModel::from_pretrained(
        case_dir("seq_v3"),
        Some(HeadKind::TokenClassification),
        &Device::Cpu,
    )
    .unwrap();
    let mut unexpected = model.report().unexpected.clone();
    unexpected.sort();
    assert_eq!(
        unexpected,
        ["pooler.dense.bias", "pooler.dense.weight"],
        "the classifier has the right shape? {:?}",
        model.report()
    );
    // seq_v3's classifier is [3, 32]; the token head with num_labels 3 reuses it.
    assert!(model.report().initialized.is_empty());
    let bare =
        TaskModel::from_pretrained(case_dir("mc_v3"), Some(HeadKind::Base), &Device::Cpu).unwrap();
    assert_eq!(bare.report().unexpected.len(), 4);
}

fn forward_error(name: &str, edit: impl FnOnce(&mut ForwardInputs)) -> String {
    let dir = case_dir(name);
    let model = TaskModel::from_pretrained(&dir, None, &Device::Cpu).unwrap();
    let manifest = manifest();
    let entry = manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    let run_name = entry["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .find(|r| *r != "nolabels")
        .unwrap();
    let mut inputs =
        ForwardInputs::from_file(dir.join(format!("{run_name}.input.json")), &Device::Cpu).unwrap();
    edit(&mut inputs);
    let input = ModelInput {
        input_ids: inputs.input_ids.clone(),
        attention_mask: inputs.attention_mask.clone(),
        token_type_ids: None,
        position_ids: None,
    };
    let labels = Labels {
        labels: inputs.labels.as_ref(),
        start_positions: inputs.start_positions.as_ref(),
        end_positions: inputs.end_positions.as_ref(),
    };
    let err = model
        .forward(&input, labels, ForwardOptions::default())
        .unwrap_err()
        .to_string();
    println!("{name}: {err}");
    err
}

#[test]
fn labels_that_do_not_fit_are_clear_errors() {
    let dev = Device::Cpu;
    assert!(forward_error("seq_problem_single_label", |i| i.labels =
        Some(Tensor::new(&[1i64, 3, 0], &dev).unwrap()))
    .contains("label 3"));
    assert!(forward_error("tok_v3", |i| i.labels =
        Some(Tensor::new(&[[1i64, 7]], &dev).unwrap()))
    .contains("labels must be"));
    assert!(forward_error("qa_v3", |i| i.start_positions =
        Some(Tensor::new(&[[1i64, 2], [3, 4], [5, 6]], &dev).unwrap()))
    .contains("start_positions"));
    assert!(forward_error("qa_v3", |i| i.end_positions = None).contains("both"));
    assert!(forward_error("mc_v3", |i| i.labels =
        Some(Tensor::new(&[0i64, 1, 2], &dev).unwrap()))
    .contains("labels must be [2]"));
    assert!(forward_error("mc_v3", |i| i.labels =
        Some(Tensor::new(&[0i64, 3], &dev).unwrap()))
    .contains("label 3"));
    assert!(forward_error("mc_v3", |i| i.attention_mask =
        Some(Tensor::ones((2, 2, 12), candle_core::DType::I64, &dev).unwrap()))
    .contains("attention_mask"));
    assert!(forward_error("mc_v3", |i| i.input_ids =
        i.input_ids.flatten_to(1).unwrap())
    .contains("choices"));
    assert!(forward_error("seq_problem_multi_label", |i| i.labels =
        Some(Tensor::ones((3, 2), candle_core::DType::F32, &dev).unwrap()))
    .contains("shape"));
    assert!(forward_error("mlm_legacy_v3", |i| i.start_positions =
        Some(Tensor::new(&[0i64], &dev).unwrap()))
    .contains("question answering"));
}

#[test]
fn masked_lm_ignores_the_rtd_head_and_tied_decoder_copies() {
    let src = case_dir("mlm_legacy_v3");
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let path = tmp.path().join("model.safetensors");
    let mut tensors = safetensors::load(&path, &Device::Cpu).unwrap();
    let z = Tensor::zeros((32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    tensors.insert("mask_predictions.dense.weight".into(), z.clone());
    tensors.insert("mask_predictions.classifier.weight".into(), z);
    tensors.insert(
        "cls.predictions.decoder.weight".into(),
        tensors["deberta.embeddings.word_embeddings.weight"].clone(),
    );
    tensors.insert(
        "cls.predictions.decoder.bias".into(),
        tensors["cls.predictions.bias"].clone(),
    );
    safetensors::save(&tensors, &path).unwrap();
    let model = TaskModel::from_pretrained(tmp.path(), None, &Device::Cpu).unwrap();
    let report = model.report();
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert_eq!(
        report.ignored,
        [
            "cls.predictions.decoder.bias",
            "mask_predictions.classifier.weight",
            "mask_predictions.dense.weight"
        ]
    );
    // The same tensors are unexpected for a head that does not know them.
    let seq = TaskModel::from_pretrained(
        tmp.path(),
        Some(HeadKind::SequenceClassification),
        &Device::Cpu,
    )
    .unwrap();
    assert!(seq
        .report()
        .unexpected
        .iter()
        .any(|n| n.starts_with("mask_predictions.")));
}
