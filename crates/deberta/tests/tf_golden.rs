//! Golden tests of `tf_model.h5` checkpoints against the TF classes of transformers 4.57.6
//! (`fixtures/tf`, `scripts/gen_tf_fixtures.py`): the bare model and every head, on a v3-style,
//! a conv-layer and a v2-base-style config. TF zeroes the attention of padded query rows, so
//! per-token outputs are compared at real tokens (the inputs are right-padded, so every
//! sequence-level output comes from a real first token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use candle_core::{safetensors, DType, Device, Tensor};
use common::ForwardInputs;
use deberta::{ForwardOptions, Labels, ModelInput, PathChoice, TaskModel, TaskOutput};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn case_dir(name: &str) -> PathBuf {
    common::fixtures_dir().join("tf").join(name)
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(case_dir("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn forward(model: &TaskModel, dir: &Path) -> (TaskOutput, Tensor) {
    let dev = Device::Cpu;
    let inputs = ForwardInputs::from_file(dir.join("input.json"), &dev).unwrap();
    let input = ModelInput {
        input_ids: inputs.input_ids.clone(),
        attention_mask: inputs.attention_mask.clone(),
        token_type_ids: inputs.token_type_ids.clone(),
        position_ids: inputs.position_ids.clone(),
    };
    let opts = ForwardOptions {
        output_hidden_states: true,
        output_attentions: false,
    };
    let out = model.forward(&input, Labels::default(), opts).unwrap();
    (out, inputs.attention_mask.unwrap())
}

fn named(out: &TaskOutput) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = [
        ("last_hidden_state", &out.last_hidden_state),
        ("logits", &out.logits),
        ("start_logits", &out.start_logits),
        ("end_logits", &out.end_logits),
    ]
    .into_iter()
    .filter_map(|(n, t)| t.as_ref().map(|t| (n.to_string(), t.clone())))
    .collect();
    for (i, h) in out.hidden_states.iter().flatten().enumerate() {
        v.push((format!("hidden_states.{i}"), h.clone()));
    }
    v
}

/// The rows of a per-token output `[N, L, ...]` at real tokens; other outputs unchanged.
pub fn real_tokens(t: &Tensor, mask: &Tensor) -> Tensor {
    let l = *mask.dims().last().unwrap();
    let flat = mask.reshape(((), l)).unwrap();
    let (n, _) = flat.dims2().unwrap();
    if t.dims().len() < 2 || t.dims()[..2] != [n, l] {
        // Sequence-level output: every first token is real in these fixtures.
        let first: Vec<u32> = flat
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            first.iter().all(|&m| m == 1),
            "a sequence starts with padding"
        );
        return t.clone();
    }
    let keep: Vec<u32> = flat
        .flatten_all()
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, &m)| m == 1)
        .map(|(i, _)| i as u32)
        .collect();
    let rest: Vec<usize> = t.dims()[2..].to_vec();
    let rows = t.reshape([vec![n * l], rest].concat()).unwrap();
    let idx = Tensor::new(keep.as_slice(), t.device()).unwrap();
    rows.index_select(&idx, 0).unwrap()
}

fn check_case(name: &str, path: PathChoice) {
    let dir = case_dir(name);
    let model =
        TaskModel::from_pretrained_with(&dir, None, &Device::Cpu, common::on_path(path)).unwrap();
    assert_eq!(model.plan().path_name(), common::path_name(path));
    let report = model.report();
    assert!(
        report.unexpected.is_empty() && report.initialized.is_empty(),
        "{name}: {report:?}"
    );
    assert!(report.files[0].ends_with("tf_model.h5"), "{report:?}");
    let entry = manifest()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap();
    assert_eq!(model.kind().class_name(), entry["class"]);
    let expected = safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let (out, mask) = forward(&model, &dir);
    let got = named(&out);
    assert_eq!(got.len(), expected.len(), "{name}: outputs");
    for (key, tensor) in &got {
        let exp = &expected[key];
        let label = format!("{name}/{}/{key}", common::path_name(path));
        common::assert_close(
            &label,
            &real_tokens(tensor, &mask),
            &real_tokens(exp, &mask),
            ATOL,
            RTOL,
        );
    }
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
        fn every_tf_fixture_has_a_test() {
            let tested = [$(stringify!($case)),*];
            for case in manifest()["cases"].as_array().unwrap() {
                assert!(tested.contains(&case["name"].as_str().unwrap()), "{} untested", case["name"]);
            }
        }
    };
}

golden!(
    base_v3,
    mlm_v3,
    seq_v3,
    tok_v3,
    qa_v3,
    mc_v3,
    base_conv,
    mlm_conv,
    seq_conv,
    tok_conv,
    qa_conv,
    mc_conv,
    base_v2_abs,
    seq_v2_abs,
    mlm_embedding_size,
    base_conv_groups2_block_diagonal,
);

/// The script loaded each TF checkpoint's weights into the PyTorch classes of transformers 5.24
/// and got TF's outputs at real tokens.
#[test]
fn pytorch_classes_agree_with_tf_on_the_same_weights() {
    let text = std::fs::read_to_string(case_dir("pt_vs_tf.json")).unwrap();
    let results: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(results.len(), manifest()["cases"].as_array().unwrap().len());
    for r in results {
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["max_abs_diff"].as_f64().unwrap() <= 1e-4, "{r}");
    }
}
