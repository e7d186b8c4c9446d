//! Property tests over the checkpoint readers: any byte string (random, or a valid file with
//! random damage) gives `Ok` or a named error, never a panic, within bounded memory and time.
//!
//! Inputs come from a seeded generator (splitmix64), so a failure names a reproducible case;
//! set `DEBERTA_PROP_CASES` for more cases per property (default 1500). Each property runs in a
//! child process under a 1 GiB address-space limit (`common/isolate.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::time::{Duration, Instant};

use deberta::export::pytorch::zip_stored;
use deberta::pth::PthFile;
use deberta::{Checkpoint, WeightFormat};
use isolate::isolated;

const LIMIT: u64 = 1 << 30;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A value that is often at a boundary.
    fn edgy(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX >> self.below(64),
            2 => 1 << self.below(64),
            3 => self.below(300) as u64,
            _ => self.next(),
        }
    }
}

fn cases() -> u64 {
    std::env::var("DEBERTA_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

/// Applies 1-4 random edits: byte overwrite, insertion, deletion, truncation, or a 4/8-byte
/// boundary value written somewhere.
fn damage(rng: &mut Rng, mut data: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if at < data.len() => data[at] = rng.next() as u8,
            1 => {
                let n = 1 + rng.below(16);
                let ins = rng.bytes(n);
                data.splice(at..at, ins);
            }
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => data.truncate(at),
            4 if at + 4 <= data.len() => {
                data[at..at + 4].copy_from_slice(&(rng.edgy() as u32).to_le_bytes())
            }
            _ if at + 8 <= data.len() => {
                data[at..at + 8].copy_from_slice(&rng.edgy().to_le_bytes())
            }
            _ => {}
        }
    }
    data
}

/// Opens `bytes` as a pytorch_model.bin and reads every tensor it lists.
fn exercise_pth(bytes: Vec<u8>) {
    if let Ok(file) = PthFile::from_bytes(bytes) {
        let names: Vec<String> = file.tensors().map(|(n, _)| n.to_string()).collect();
        for name in names {
            if let Err(e) = file.read_f32(&name) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

fn fixture_pth() -> Vec<u8> {
    std::fs::read(common::fixtures_dir().join("models/format_pytorch_bin/pytorch_model.bin"))
        .unwrap()
}

/// The fixture's pickle, storages and other entries, so a damaged pickle can be re-zipped.
fn fixture_entries() -> Vec<(String, Vec<u8>)> {
    // Stored entries: find each local header (PK\x03\x04) and take name and data.
    let bytes = fixture_pth();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 30 <= bytes.len() && bytes[i..i + 4] == *b"PK\x03\x04" {
        let size = u32::from_le_bytes(bytes[i + 18..i + 22].try_into().unwrap()) as usize;
        let n = u16::from_le_bytes(bytes[i + 26..i + 28].try_into().unwrap()) as usize;
        let m = u16::from_le_bytes(bytes[i + 28..i + 30].try_into().unwrap()) as usize;
        let name = String::from_utf8(bytes[i + 30..i + 30 + n].to_vec()).unwrap();
        let start = i + 30 + n + m;
        out.push((name, bytes[start..start + size].to_vec()));
        i = start + size;
    }
    assert!(out.iter().any(|(n, _)| n.ends_with("data.pkl")));
    out
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    zip_stored(&refs).unwrap()
}

#[test]
fn pth_random_bytes_and_damaged_archives() {
    isolated("pth_random_bytes_and_damaged_archives", LIMIT, || {
        let mut rng = Rng(1);
        let good = fixture_pth();
        let started = Instant::now();
        for case in 0..cases() {
            let bytes = if case % 4 == 0 {
                let n = rng.below(512);
                let mut b = rng.bytes(n);
                if rng.below(2) == 0 {
                    // Give it a plausible end record so the zip parser goes deeper.
                    b.extend_from_slice(b"PK\x05\x06");
                    b.extend(rng.bytes(18));
                }
                b
            } else {
                damage(&mut rng, good.clone())
            };
            exercise_pth(bytes);
        }
        assert!(started.elapsed() < Duration::from_secs(120));
    });
}

#[test]
fn pth_damaged_pickles() {
    isolated("pth_damaged_pickles", LIMIT, || {
        let mut rng = Rng(2);
        let entries = fixture_entries();
        let pkl = entries
            .iter()
            .position(|(n, _)| n.ends_with("data.pkl"))
            .unwrap();
        for _ in 0..cases() {
            let mut e = entries.clone();
            e[pkl].1 = damage(&mut rng, e[pkl].1.clone());
            exercise_pth(rezip(&e));
        }
    });
}

/// Random programs over the opcodes the reader knows, with random arguments.
#[test]
fn pth_random_pickle_programs() {
    isolated("pth_random_pickle_programs", LIMIT, || {
        let mut rng = Rng(3);
        let simple: &[&[u8]] = &[
            b"(",
            b")",
            b"]",
            b"}",
            b"t",
            b"l",
            b"d",
            b"a",
            b"e",
            b"s",
            b"u",
            b"0",
            b"1",
            b"2",
            b"N",
            b"\x88",
            b"\x89",
            b"\x85",
            b"\x86",
            b"\x87",
            b"R",
            b"b",
            b"Q",
            b"\x94",
            b"ctorch._utils\n_rebuild_tensor_v2\n",
            b"ctorch._utils\n_rebuild_parameter\n",
            b"ctorch._utils\n_rebuild_from_type_v2\n",
            b"ccollections\nOrderedDict\n",
            b"ctorch\nFloatStorage\n",
            b"ctorch\nHalfStorage\n",
            b"X\x07\0\0\0storage",
            b"X\x010\0\0\x00",
            b"X\x03\0\0\0cpu",
            b".",
        ];
        let storage: Vec<u8> = vec![0x3f; 4096];
        for _ in 0..cases() {
            let mut p = vec![0x80, 2];
            for _ in 0..rng.below(80) {
                match rng.below(8) {
                    0 => {
                        p.push(b'J');
                        p.extend_from_slice(&(rng.edgy() as u32).to_le_bytes());
                    }
                    1 => {
                        p.push(b'K');
                        p.push(rng.below(20) as u8);
                    }
                    2 => {
                        p.push([b'q', b'h'][rng.below(2)]);
                        p.push(rng.below(8) as u8);
                    }
                    3 => {
                        p.extend_from_slice(&[0x8a, 8]);
                        p.extend_from_slice(&rng.edgy().to_le_bytes());
                    }
                    _ => p.extend_from_slice(simple[rng.below(simple.len())]),
                }
            }
            p.push(b'.');
            exercise_pth(rezip(&[
                ("archive/data.pkl".into(), p),
                ("archive/data/0".into(), storage.clone()),
            ]));
        }
    });
}

/// A tiny valid safetensors file.
fn safetensors_bytes() -> Vec<u8> {
    let header = br#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},"__metadata__":{"format":"pt"}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend(std::iter::repeat_n(0x3c, 22));
    out
}

#[test]
fn safetensors_random_headers() {
    isolated("safetensors_random_headers", LIMIT, || {
        let mut rng = Rng(4);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let good = safetensors_bytes();
        let device = candle_core::Device::Cpu;
        for case in 0..cases() {
            let bytes = if case % 5 == 0 {
                let n = rng.below(64);
                let mut b = (rng.edgy()).to_le_bytes().to_vec();
                b.extend(rng.bytes(n));
                b
            } else {
                damage(&mut rng, good.clone())
            };
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(ck) =
                Checkpoint::from_files(std::slice::from_ref(&path), WeightFormat::Safetensors)
            {
                let names: Vec<(String, Vec<usize>)> = ck
                    .names()
                    .map(|n| (n.to_string(), ck.shape(n).unwrap().to_vec()))
                    .collect();
                for (name, shape) in names {
                    let _ = ck.load(&name, &shape, &device);
                }
            }
        }
    });
}
