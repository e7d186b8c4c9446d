//! Hostile `pytorch_model.bin` files, built at test time: each must end in a named error (or an
//! empty state dict) within bounded memory and time, never a panic, abort or stack overflow.
//! Every case runs in a child process under a 1 GiB address-space limit (`common/isolate.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::path::PathBuf;

use candle_core::Device;
use deberta::export::pytorch::zip_stored;
use deberta::pth::{PthError, PthFile};
use deberta::{DebertaV2Model, Error};
use isolate::isolated;

const LIMIT: u64 = 1 << 30;

/// A protocol-2 pickle written op by op.
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn new() -> Self {
        P(vec![0x80, 2])
    }
    fn op(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn str(mut self, s: &str) -> Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn int(mut self, v: i32) -> Self {
        self.0.push(b'J');
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn long(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&[0x8a, 8]);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `('storage', torch.FloatStorage, key, 'cpu', numel)` + BINPERSID.
    fn storage(self, key: &str, numel: i64) -> Self {
        self.op(b"(")
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cpu")
            .long(numel)
            .op(b"tQ")
    }
}

/// `{name: _rebuild_tensor_v2(storage key "0" of `numel`, 0, shape, stride, False, {})}`.
fn one_tensor_pickle(name: &str, numel: i64, shape: &[i64], stride: &[i64]) -> Vec<u8> {
    let mut p = P::new()
        .op(b"}(")
        .str(name)
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(")
        .storage("0", numel)
        .int(0)
        .op(b"(");
    for &d in shape {
        p = p.long(d);
    }
    p = p.op(b"t(");
    for &s in stride {
        p = p.long(s);
    }
    p.op(b"t\x89}tRu.").0
}

fn archive(pickle: &[u8], storage: &[u8]) -> Vec<u8> {
    zip_stored(&[
        ("archive/data.pkl", pickle),
        ("archive/byteorder", b"little"),
        ("archive/data/0", storage),
        ("archive/version", b"3\n"),
    ])
    .unwrap()
}

fn open_err(bytes: Vec<u8>) -> PthError {
    match PthFile::from_bytes(bytes) {
        Ok(f) => panic!("should fail, opened {f:?}"),
        Err(e) => {
            println!("error: {e}");
            e
        }
    }
}

/// The `format_pytorch_bin` fixture with its weights replaced by `bytes`; the load must fail
/// with an error naming `pytorch_model.bin` and containing `needle`.
fn load_fails(bytes: Vec<u8>, needle: &str) {
    let src = common::fixtures_dir().join("models/format_pytorch_bin");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let path: PathBuf = tmp.path().join("pytorch_model.bin");
    std::fs::write(&path, bytes).unwrap();
    match DebertaV2Model::from_pretrained(tmp.path(), &Device::Cpu) {
        Ok(_) => panic!("loading should fail"),
        Err(e) => {
            let msg = e.to_string();
            println!("error: {msg}");
            assert!(
                matches!(e, Error::WeightFile { .. } | Error::MissingWeight { .. }),
                "{msg}"
            );
            assert!(msg.contains("pytorch_model.bin"), "{msg}");
            assert!(msg.contains(needle), "`{needle}` not in: {msg}");
        }
    }
}

#[test]
fn declared_shape_larger_than_its_zip_entry() {
    isolated("declared_shape_larger_than_its_zip_entry", LIMIT, || {
        // [1e9, 32] f32 = 128 GB declared, 12 KB stored.
        let pickle = one_tensor_pickle(
            "embeddings.word_embeddings.weight",
            32_000_000_000,
            &[1_000_000_000, 32],
            &[32, 1],
        );
        let bytes = archive(&pickle, &[0u8; 12 * 1024]);
        let e = open_err(bytes.clone());
        assert!(matches!(e, PthError::Tensor { .. }), "{e}");
        assert!(e.to_string().contains("12288 bytes"), "{e}");
        load_fails(bytes, "embeddings.word_embeddings.weight");
    });
}

#[test]
fn view_past_the_end_of_its_storage() {
    isolated("view_past_the_end_of_its_storage", LIMIT, || {
        let pickle = one_tensor_pickle("w", 16, &[4, 4], &[4, 1_000]);
        let e = open_err(archive(&pickle, &[0u8; 64]));
        assert!(
            matches!(e, PthError::Tensor { ref name, .. } if name == "w"),
            "{e}"
        );
        let pickle = one_tensor_pickle("w", 16, &[i64::MAX, 4], &[4, 1]);
        let e = open_err(archive(&pickle, &[0u8; 64]));
        assert!(matches!(e, PthError::Tensor { .. }), "{e}");
        let pickle = one_tensor_pickle("w", 16, &[-4, 4], &[4, 1]);
        let e = open_err(archive(&pickle, &[0u8; 64]));
        assert!(e.to_string().contains("negative"), "{e}");
    });
}

#[test]
fn rebuild_calls_with_too_few_arguments() {
    isolated("rebuild_calls_with_too_few_arguments", LIMIT, || {
        for func in [
            "_rebuild_tensor_v2",
            "_rebuild_parameter",
            "_rebuild_from_type_v2",
        ] {
            let pickle = P::new()
                .op(b"}(")
                .str("w")
                .global("torch._utils", func)
                .op(b")Ru.")
                .0;
            let e = open_err(archive(&pickle, &[0u8; 64]));
            assert!(
                e.to_string().contains("argument 1 is missing"),
                "{func}: {e}"
            );
            load_fails(archive(&pickle, &[0u8; 64]), "argument 1 is missing");
        }
        // A storage tuple of one element.
        let pickle = P::new()
            .op(b"}(")
            .str("w")
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .str("storage")
            .op(b"tQtRu.")
            .0;
        let e = open_err(archive(&pickle, &[0u8; 64]));
        assert!(e.to_string().contains("persistent id"), "{e}");
        // Two of six arguments.
        let pickle = P::new()
            .op(b"}(")
            .str("w")
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b"(")
            .storage("0", 16)
            .int(0)
            .op(b"tRu.")
            .0;
        let e = open_err(archive(&pickle, &[0u8; 64]));
        assert!(e.to_string().contains("argument 3 is missing"), "{e}");
    });
}

#[test]
fn a_million_nested_lists() {
    isolated("a_million_nested_lists", LIMIT, || {
        // What pickle.dumps writes for [[[...]]] nested 1M deep: EMPTY_LIST, LONG_BINPUT each,
        // then APPENDs from the innermost out (a 7 MB pickle).
        let n = 1_000_000u32;
        let mut p = P::new();
        for i in 0..n {
            p.0.push(b']');
            p.0.push(b'r');
            p.0.extend_from_slice(&i.to_le_bytes());
        }
        p.0.extend(std::iter::repeat_n(b'a', n as usize - 1));
        p.0.push(b'.');
        let e = open_err(archive(&p.0, &[]));
        assert!(matches!(e, PthError::Limit { .. }), "{e}");
        // MARK nesting.
        let mut p = P::new();
        p.0.extend(std::iter::repeat_n(b'(', 1_000_000));
        let e = open_err(archive(&p.0, &[]));
        assert!(matches!(e, PthError::Limit { .. }), "{e}");
        load_fails(archive(&p.0, &[]), "over the limit");
    });
}

#[test]
fn memo_billion_laughs() {
    isolated("memo_billion_laughs", LIMIT, || {
        // Each level is a list of 10 references to the level below: 10^30 elements if
        // expanded, a few KB as a pickle.
        let mut p = P::new().op(b"}(").str("laughs").op(b"]q\x000");
        for level in 1..=30u8 {
            p.0.push(b'(');
            for _ in 0..10 {
                p.0.extend_from_slice(&[b'h', level - 1]);
            }
            p.0.extend_from_slice(&[b'l', b'q', level, b'0']);
        }
        // And a list that contains itself.
        let p = p.op(b"h\x1e").str("self").op(b"]q\x63h\x63ah\x63ah\x63au.");
        let started = std::time::Instant::now();
        let file = PthFile::from_bytes(archive(&p.0, &[])).unwrap();
        assert_eq!(file.tensors().count(), 0);
        assert!(started.elapsed().as_secs() < 5);
        load_fails(archive(&p.0, &[]), "missing weight");
    });
}

#[test]
fn code_execution_is_refused() {
    isolated("code_execution_is_refused", LIMIT, || {
        let pickle = P::new()
            .global("os", "system")
            .op(b"(")
            .str("touch /tmp/pwned")
            .op(b"tR.")
            .0;
        let e = open_err(archive(&pickle, &[]));
        assert!(e.to_string().contains("os.system"), "{e}");
        load_fails(archive(&pickle, &[]), "no code runs");
    });
}

#[test]
fn zip_container_damage() {
    isolated("zip_container_damage", LIMIT, || {
        let pickle = one_tensor_pickle("w", 4, &[2, 2], &[2, 1]);
        let good = archive(&pickle, &[0u8; 16]);
        let f = PthFile::from_bytes(good.clone()).unwrap();
        assert_eq!(f.read_f32("w").unwrap(), vec![0.0; 4]);
        // Every truncation and every single-byte flip: Ok or a named error.
        for cut in 0..good.len() {
            let _ = PthFile::from_bytes(good[..cut].to_vec());
        }
        for i in 0..good.len() {
            for v in [0x00, 0xff, 0x7f, 0x80] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Ok(f) = PthFile::from_bytes(bad) {
                    let _ = f.read_f32("w");
                }
            }
        }
        // The central directory claims 65535 entries and 4 GB.
        let mut bad = good.clone();
        let eocd = bad.len() - 22;
        bad[eocd + 10..eocd + 12].copy_from_slice(&[0xfe, 0xff]);
        bad[eocd + 12..eocd + 16].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff]);
        let e = open_err(bad);
        assert!(
            matches!(e, PthError::Limit { .. } | PthError::Zip(_)),
            "{e}"
        );
        let e = open_err(b"PK\x05\x06 not really a zip".to_vec());
        assert!(matches!(e, PthError::Zip(_)), "{e}");
    });
}

/// Strided and offset views read what torch would (a transposed view of a shared storage).
#[test]
fn strided_views_read_like_torch() {
    let storage: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
    let pickle = P::new()
        .op(b"}(")
        .str("t")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(")
        .storage("0", 6)
        .int(0)
        .op(b"(")
        .long(3)
        .long(2)
        .op(b"t(")
        .long(1)
        .long(3)
        .op(b"t\x89}tR")
        .str("row")
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b"(")
        .storage("0", 6)
        .int(3)
        .op(b"(")
        .long(3)
        .op(b"t(")
        .long(1)
        .op(b"t\x89}tRu.")
        .0;
    let f = PthFile::from_bytes(archive(&pickle, &storage)).unwrap();
    assert_eq!(f.read_f32("t").unwrap(), vec![0., 3., 1., 4., 2., 5.]);
    assert_eq!(f.read_f32("row").unwrap(), vec![3., 4., 5.]);
}
