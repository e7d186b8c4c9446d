//! `convert` never leaves a directory whose next load reads another file than the one just
//! written, writes through a temporary file, and writes every tensor transformers' module tree
//! defines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use candle_core::Device;
use deberta::export::{convert, write_atomic};
use deberta::{Checkpoint, DebertaV2Model, Error, WeightFormat};

fn case(name: &str) -> PathBuf {
    common::fixtures_dir().join("models").join(name)
}

#[test]
fn convert_refuses_a_directory_whose_safetensors_would_shadow_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("out");
    std::fs::create_dir(&dst).unwrap();
    std::fs::copy(
        case("v3_buckets").join("model.safetensors"),
        dst.join("model.safetensors"),
    )
    .unwrap();
    let e =
        convert(&case("v3_buckets"), &dst, WeightFormat::PyTorch, None).expect_err("should refuse");
    println!("error: {e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    assert!(!dst.join("pytorch_model.bin").exists());
    // Writing the format a load picks first is fine, and replaces the old file.
    convert(&case("v3_buckets"), &dst, WeightFormat::Safetensors, None).unwrap();
    let ck = Checkpoint::from_dir(&dst).unwrap();
    assert_eq!(ck.format(), WeightFormat::Safetensors);
}

#[cfg(unix)]
#[test]
fn converted_files_follow_the_umask_and_leave_no_temporary_file() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    for (to, name) in [
        (WeightFormat::Safetensors, "model.safetensors"),
        (WeightFormat::PyTorch, "pytorch_model.bin"),
        (WeightFormat::Tf, "tf_model.h5"),
    ] {
        let dst = tmp.path().join(to.name());
        convert(&case("v3_buckets"), &dst, to, None).unwrap();
        let mode = std::fs::metadata(dst.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        // Created like any file (0666 less the umask), not 0600 like a tempfile.
        assert_ne!(mode, 0o600, "{name}: {mode:o}");
        assert!(mode & 0o400 != 0, "{name}: {mode:o}");
        let names: Vec<String> = std::fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "{name}: temporary files left: {names:?}"
        );
    }
}

#[test]
fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.safetensors");
    std::fs::write(&path, b"the good file").unwrap();
    let e = write_atomic(&path, |temp| {
        std::fs::write(temp, b"half a fi").unwrap();
        Err(Error::Input("disk full".into()))
    })
    .err()
    .unwrap();
    assert!(e.to_string().contains("disk full"));
    assert_eq!(std::fs::read(&path).unwrap(), b"the good file");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    write_atomic(&path, |temp| {
        std::fs::write(temp, b"new").map_err(|e| Error::Input(e.to_string()))
    })
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

/// `relative_attention: false` with `norm_rel_ebd: "layer_norm"`: transformers' encoder still
/// has a LayerNorm, so the converted checkpoint must hold it.
#[test]
fn unread_encoder_layer_norm_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(case("no_relative_attention").join(f), src.join(f)).unwrap();
    }
    let path = src.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["norm_rel_ebd"] = "layer_norm".into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    for to in [WeightFormat::Safetensors, WeightFormat::PyTorch] {
        let dst = tmp.path().join(to.name());
        convert(&src, &dst, to, None).unwrap();
        let ck = Checkpoint::from_dir(&dst).unwrap();
        for name in ["encoder.LayerNorm.weight", "encoder.LayerNorm.bias"] {
            assert!(ck.contains(name), "{to:?}: {name} not written");
        }
        let (_, report) = DebertaV2Model::from_pretrained(&dst, &Device::Cpu).unwrap();
        assert!(report.initialized.is_empty(), "{:?}", report.initialized);
        assert!(report.unexpected.is_empty(), "{:?}", report.unexpected);
    }
}

/// A sharded TF checkpoint (`tf_model.h5.index.json` + shards, as transformers' TF
/// `save_pretrained(max_shard_size=...)` lays them out), made here by splitting our own
/// converted `tf_model.h5` in two, loads and computes what the single file does.
#[test]
fn sharded_tf_checkpoints_load() {
    use deberta::tf::{write_shard, H5Weight, KerasH5};
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    convert(&case("v3_buckets"), &single, WeightFormat::Tf, None).unwrap();
    let h5 = KerasH5::open(single.join("tf_model.h5")).unwrap();
    let mut weights: Vec<H5Weight> = Vec::new();
    for w in h5.read_all().unwrap().into_iter().flat_map(|l| l.weights) {
        if !weights.iter().any(|x| x.name == w.name) {
            weights.push(w);
        }
    }
    let sharded = tmp.path().join("sharded");
    std::fs::create_dir(&sharded).unwrap();
    std::fs::copy(single.join("config.json"), sharded.join("config.json")).unwrap();
    let half = weights.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [&weights[..half], &weights[half..]].into_iter().enumerate() {
        let file = format!("tf_model-0000{}-of-00002.h5", i + 1);
        write_shard(sharded.join(&file), part).unwrap();
        for w in part {
            weight_map.insert(w.name.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(sharded.join("tf_model.h5.index.json"), index.to_string()).unwrap();

    let ids = candle_core::Tensor::new(&[[1u32, 5, 7, 9, 2]], &Device::Cpu).unwrap();
    let run = |dir: &std::path::Path| {
        let (model, report) = DebertaV2Model::from_pretrained(dir, &Device::Cpu).unwrap();
        assert!(report.initialized.is_empty(), "{:?}", report.initialized);
        assert!(report.unexpected.is_empty(), "{:?}", report.unexpected);
        let out = model
            .forward(
                &deberta::ModelInput::from_ids(ids.clone()),
                deberta::ForwardOptions::default(),
            )
            .unwrap();
        (
            report.files,
            out.last_hidden_state
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        )
    };
    let (files, sharded_out) = run(&sharded);
    assert_eq!(files.len(), 2, "{files:?}");
    let (_, single_out) = run(&single);
    assert_eq!(sharded_out, single_out);
}
