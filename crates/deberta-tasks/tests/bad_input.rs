//! Bad inputs give clear per-item errors naming the field, never a panic; the rest of a batch
//! still runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use candle_core::Device;
use deberta_tasks::*;

fn dir(model: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tasks")
        .join(model)
}

#[test]
fn fill_mask_errors() {
    let p = FillMask::from_dir(dir("fill_mask"), &Device::Cpu).unwrap();
    let out = p.run_batch(&["", "no mask", "a [MASK]."], &FillMaskOptions::default());
    assert_eq!(
        out[0].as_ref().unwrap_err().to_string(),
        "invalid `text`: is empty"
    );
    assert!(out[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("no mask token ([MASK]) found"));
    assert!(out[2].is_ok());
    let bad = FillMaskOptions {
        targets: Some(vec![]),
        ..Default::default()
    };
    let err = p.run("a [MASK].", &bad).unwrap_err().to_string();
    assert!(err.contains("targets"), "{err}");
}

#[test]
fn ner_errors() {
    let p = TokenClassification::from_dir(dir("ner"), &Device::Cpu).unwrap();
    let opts = NerOptions {
        ignore_labels: vec!["O".into(), "PERSON".into()],
        ..Default::default()
    };
    let err = p.run("Angela", &opts).unwrap_err().to_string();
    assert!(
        err.contains("unknown label `PERSON`") && err.contains("B-PER"),
        "{err}"
    );
    let ok = NerOptions {
        ignore_labels: vec!["PER".into(), "B-LOC".into()],
        ..Default::default()
    };
    assert!(p.run("Angela", &ok).is_ok());
    assert!(p
        .run("   ", &NerOptions::default())
        .unwrap_err()
        .to_string()
        .contains("`text`"));
    let stride = NerOptions {
        stride: Some(2),
        ..Default::default()
    };
    assert!(p
        .run("x", &stride)
        .unwrap_err()
        .to_string()
        .contains("stride"));
}

#[test]
fn qa_errors() {
    let p = QuestionAnswering::from_dir(dir("qa"), &Device::Cpu).unwrap();
    let opts = QaOptions {
        max_seq_len: Some(12),
        doc_stride: Some(2),
        ..Default::default()
    };
    let long = QaInput {
        question: "What is the name of the tall iron tower in Paris?".into(),
        context: "Eiffel.".into(),
    };
    let short = QaInput {
        question: "Who?".into(),
        context: "Zoë.".into(),
    };
    let empty = QaInput {
        question: "Who?".into(),
        context: "".into(),
    };
    let out = p.run_batch(&[long, short, empty], &opts);
    assert!(out[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("`question`: does not fit"));
    assert!(out[1].is_ok());
    assert!(out[2]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("`context`"));
    let bad = QaOptions {
        top_k: 0,
        ..Default::default()
    };
    let err = p
        .run(
            &QaInput {
                question: "a".into(),
                context: "b".into(),
            },
            &bad,
        )
        .unwrap_err();
    assert!(err.to_string().contains("top_k"));
}

#[test]
fn zero_shot_and_choice_errors() {
    let z = ZeroShot::from_dir(dir("nli"), &Device::Cpu).unwrap();
    let input = ZeroShotInput {
        text: "x".into(),
        candidate_labels: None,
    };
    assert!(z
        .run(&input, &ZeroShotOptions::default())
        .unwrap_err()
        .to_string()
        .contains("candidate_labels"));
    let opts = ZeroShotOptions {
        candidate_labels: vec!["a".into()],
        hypothesis_template: "no slot".into(),
        ..Default::default()
    };
    assert!(z
        .run(&input, &opts)
        .unwrap_err()
        .to_string()
        .contains("hypothesis_template"));
    let c = MultipleChoice::from_dir(dir("choice"), &Device::Cpu).unwrap();
    let err = c
        .run(&ChoiceInput {
            prompt: "p".into(),
            choices: vec![],
        })
        .unwrap_err();
    assert!(err.to_string().contains("choices"));
    let err = c
        .run(&ChoiceInput {
            prompt: "p".into(),
            choices: vec!["a".into(), "".into()],
        })
        .unwrap_err();
    assert!(err.to_string().contains("choices[1]"));
}

#[test]
fn wrong_model_kind_is_an_error_not_a_panic() {
    let z = ZeroShot::from_dir(dir("fill_mask"), &Device::Cpu);
    // Any head loads from any checkpoint (missing head weights are initialised), so this loads;
    // running must still not panic.
    if let Ok(z) = z {
        let input = ZeroShotInput {
            text: "x".into(),
            candidate_labels: None,
        };
        let opts = ZeroShotOptions {
            candidate_labels: vec!["a".into()],
            ..Default::default()
        };
        let _ = z.run(&input, &opts);
    }
}
