//! Gradient parity with transformers: for every case of `fixtures/grad` (every config variant
//! and every head / loss rule), the loss and the gradient of every parameter of
//! `model.named_parameters()` against the float64 reference of `scripts/gen_grad_fixtures.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../deberta/tests/common/mod.rs"]
mod common;

use candle_core::{safetensors, Device, Tensor};
use deberta::{DropoutRng, TaskModel};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-3;

fn check_case(name: &str) {
    let dir = common::fixtures_dir().join("grad").join(name);
    let device = Device::Cpu;
    let mut model = TaskModel::from_pretrained(&dir, None, &device).unwrap();
    model.train(DropoutRng::new(0)).unwrap();
    let inputs = common::ForwardInputs::from_file(dir.join("input.json"), &device).unwrap();
    let got = deberta_train::gradients(&model, &inputs.model_input(), inputs.labels()).unwrap();
    let expected = safetensors::load(dir.join("expected.safetensors"), &device).unwrap();

    common::assert_close(
        &format!("{name} loss"),
        &got.loss.reshape(1).unwrap(),
        &expected["loss"],
        ATOL,
        RTOL,
    );
    let mut expected_names: Vec<&str> = expected
        .keys()
        .filter_map(|k| k.strip_prefix("grad."))
        .collect();
    expected_names.sort();
    let got_names: Vec<&str> = got.grads.keys().map(String::as_str).collect();
    assert_eq!(got_names, expected_names, "{name}: parameter names");
    let mut worst = (0f32, String::new());
    let mut failed = Vec::new();
    for (param, grad) in &got.grads {
        let want = &expected[&format!("grad.{param}")];
        let (diff, ok) = compare(grad, want);
        if !ok {
            failed.push(format!("{param} (max |diff| {diff:.3e})"));
        }
        if diff > worst.0 {
            worst = (diff, param.clone());
        }
    }
    println!(
        "{name}: {} gradients, max |diff| {:.3e} at {}",
        got.grads.len(),
        worst.0,
        worst.1
    );
    assert!(
        failed.is_empty(),
        "{name}: gradients outside atol {ATOL} + rtol {RTOL}:\n  {}",
        failed.join("\n  ")
    );
}

/// The max `|got - want|` and whether every element is within `ATOL + RTOL * |want|`.
fn compare(got: &Tensor, want: &Tensor) -> (f32, bool) {
    assert_eq!(got.dims(), want.dims());
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (g, w) = (flat(got), flat(want));
    let mut max = 0f32;
    let mut ok = true;
    for (a, b) in g.iter().zip(&w) {
        let d = (a - b).abs();
        ok &= d <= ATOL + RTOL * b.abs();
        max = max.max(if d.is_nan() { f32::INFINITY } else { d });
    }
    (max, ok && !max.is_infinite())
}

macro_rules! grad_cases {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check_case(stringify!($name)); })*

        #[test]
        fn every_fixture_case_has_a_test() {
            let listed = [$(stringify!($name)),*];
            let manifest: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(common::fixtures_dir().join("grad/manifest.json")).unwrap(),
            )
            .unwrap();
            let cases = manifest["cases"].as_array().unwrap();
            assert!(!cases.is_empty());
            for case in cases {
                let name = case["name"].as_str().unwrap();
                assert!(listed.contains(&name), "fixture case {name} has no test");
            }
        }
    };
}

grad_cases!(
    v3_buckets,
    unbucketed_small_span,
    separate_pos_proj,
    c2p_only,
    p2c_only,
    c2p_only_shared,
    no_pos_att_type,
    no_relative_attention,
    norm_rel_none,
    token_types_positions,
    embedding_size,
    conv_groups_gelu,
    conv_tanh_k5,
    act_gelu_new_eps,
    act_mish,
    act_quick_gelu,
    act_silu,
    act_relu,
    seq_conv_single_label,
    seq_mse_one_label,
    seq_regression,
    seq_multi_label,
    seq_soft_labels,
    seq_negative_dropped,
    mlm_legacy_v3,
    mlm_legacy_conv_embedding_size,
    mlm_lm_predictions_v3,
    tok_v3,
    tok_conv,
    qa_v3,
    qa_conv,
    mc_v3,
    mc_conv,
    seq_pad_id_inside,
    mlm_pad_id_inside,
);
