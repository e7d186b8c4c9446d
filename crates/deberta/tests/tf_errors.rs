//! Bad `tf_model.h5` files give errors that name the file and the group or weight, never a
//! panic: corrupt, truncated, not Keras, a missing weight group, a listed weight without its
//! dataset, a kernel of the wrong shape, and a full conv kernel under `conv_groups > 1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use deberta::tf::{h5, H5Layer, KerasH5};
use deberta::{Checkpoint, HeadKind, TaskModel};

/// A copy of a TF fixture whose `tf_model.h5` is rewritten by `edit`.
fn edited(case: &str, edit: impl FnOnce(&mut Vec<H5Layer>)) -> tempfile::TempDir {
    let src = common::fixtures_dir().join("tf").join(case);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let mut layers = KerasH5::open(src.join("tf_model.h5"))
        .unwrap()
        .read_all()
        .unwrap();
    edit(&mut layers);
    h5::write(tmp.path().join("tf_model.h5"), &layers).unwrap();
    tmp
}

fn with_file(case: &str, bytes: impl FnOnce(Vec<u8>) -> Vec<u8>) -> tempfile::TempDir {
    let src = common::fixtures_dir().join("tf").join(case);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let data = std::fs::read(src.join("tf_model.h5")).unwrap();
    std::fs::write(tmp.path().join("tf_model.h5"), bytes(data)).unwrap();
    tmp
}

fn load_error(dir: &Path) -> String {
    match TaskModel::from_pretrained(dir, None, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_fixture_survives_a_read_write_cycle() {
    let dir = edited("seq_conv", |_| {});
    let model = TaskModel::from_pretrained(dir.path(), None, &Device::Cpu).unwrap();
    assert_eq!(model.kind(), HeadKind::SequenceClassification);
    assert!(model.report().unexpected.is_empty() && model.report().initialized.is_empty());
}

#[test]
fn corrupt_file() {
    let dir = with_file("base_v3", |_| {
        b"this is not an HDF5 file at all".repeat(100)
    });
    let err = load_error(dir.path());
    assert!(err.contains("tf_model.h5") && err.contains("HDF5"), "{err}");
}

#[test]
fn truncated_file() {
    for keep in [8usize, 512, 4096] {
        let dir = with_file("base_v3", |d| d[..keep.min(d.len())].to_vec());
        let err = load_error(dir.path());
        assert!(err.contains("tf_model.h5"), "{keep}: {err}");
    }
    let dir = with_file("base_v3", |d| d[..d.len() / 2].to_vec());
    let err = load_error(dir.path());
    assert!(err.contains("tf_model.h5"), "{err}");
}

#[test]
fn damaged_bytes_never_panic() {
    let src = common::fixtures_dir().join("tf/base_v3/tf_model.h5");
    let data = std::fs::read(src).unwrap();
    for step in [97usize, 1031, 4099] {
        let mut bad = data.clone();
        for i in (0..bad.len()).step_by(step) {
            bad[i] ^= 0x5a;
        }
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("tf_model.h5"), &bad).unwrap();
        // Either a clean error or (if only tensor values were hit) a load; never a panic.
        let _ = Checkpoint::from_dir(tmp.path());
    }
}

#[test]
fn not_a_keras_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = hdf5_pure::FileBuilder::new();
    b.create_dataset("x").with_f32_data(&[1.0]);
    b.write(tmp.path().join("tf_model.h5")).unwrap();
    let err = Checkpoint::from_dir(tmp.path()).err().unwrap().to_string();
    assert!(err.contains("layer_names"), "{err}");
}

#[test]
fn missing_weight_group() {
    let dir = edited("base_v3", |layers| {
        layers[0]
            .weights
            .retain(|w| !w.name.contains("layer_._1/output/dense/"));
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("deberta.encoder.layer.1.output.dense.weight")
            && err.contains("deberta/encoder/layer_._1/output/dense/kernel:0"),
        "{err}"
    );
}

#[test]
fn listed_weight_without_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = hdf5_pure::FileBuilder::new();
    b.set_attr(
        "layer_names",
        hdf5_pure::AttrValue::StringArray(vec!["deberta".into()]),
    );
    let mut g = b.create_group("deberta");
    g.set_attr(
        "weight_names",
        hdf5_pure::AttrValue::StringArray(vec![
            "m/deberta/embeddings/word_embeddings/weight:0".into()
        ]),
    );
    b.add_group(g.finish());
    b.write(tmp.path().join("tf_model.h5")).unwrap();
    let err = Checkpoint::from_dir(tmp.path()).err().unwrap().to_string();
    assert!(
        err.contains("layer group `deberta`") && err.contains("word_embeddings/weight:0"),
        "{err}"
    );
}

#[test]
fn listed_layer_without_group() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = hdf5_pure::FileBuilder::new();
    b.set_attr(
        "layer_names",
        hdf5_pure::AttrValue::StringArray(vec!["deberta".into()]),
    );
    b.write(tmp.path().join("tf_model.h5")).unwrap();
    let err = Checkpoint::from_dir(tmp.path()).err().unwrap().to_string();
    assert!(err.contains("layer group `deberta`"), "{err}");
}

#[test]
fn kernel_of_the_wrong_shape() {
    let dir = edited("seq_v3", |layers| {
        let w = layers[0]
            .weights
            .iter_mut()
            .find(|w| w.name.ends_with("layer_._0/intermediate/dense/kernel:0"))
            .unwrap();
        w.shape.reverse(); // [32, 37] -> [37, 32]
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("layer group `deberta`")
            && err.contains("layer_._0/intermediate/dense/kernel:0")
            && err.contains("[37, 32]"),
        "{err}"
    );
}

#[test]
fn dense_kernel_of_the_wrong_rank() {
    let dir = edited("seq_v3", |layers| {
        let w = layers[1]
            .weights
            .iter_mut()
            .find(|w| w.name.ends_with("pooler/dense/kernel:0"))
            .unwrap();
        w.shape = vec![2, 16, 32];
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("layer group `pooler`") && err.contains("pooler/dense/kernel:0"),
        "{err}"
    );
}

#[test]
fn full_conv_kernel_under_conv_groups_is_refused() {
    // base_conv's kernel is dense; declaring conv_groups=2 cannot reproduce TF's full conv.
    let src = common::fixtures_dir().join("tf/base_conv");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("tf_model.h5"), tmp.path().join("tf_model.h5")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["conv_groups"] = 2.into();
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let err = load_error(tmp.path());
    assert!(
        err.contains("conv_groups") && err.contains("deberta/encoder/conv/conv/kernel:0"),
        "{err}"
    );
}

#[test]
fn format_override_names_what_is_missing() {
    let dir: PathBuf = common::fixtures_dir().join("tf/base_v3");
    let err = Checkpoint::from_dir_as(&dir, deberta::WeightFormat::PyTorch)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("pytorch_model.bin"), "{err}");
}
