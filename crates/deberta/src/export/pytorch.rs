//! `pytorch_model.bin` as `torch.save(state_dict)` writes it: an uncompressed zip archive
//! holding a pickled `OrderedDict` of tensors (`archive/data.pkl`) and one raw little-endian
//! storage per tensor (`archive/data/<i>`). `torch.load(..., weights_only=True)` accepts it:
//! the pickle names only `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
//! `torch.FloatStorage`.
//!
//! Reference: <https://github.com/pytorch/pytorch/blob/v2.5.0/torch/serialization.py> (`_save`,
//! `persistent_id`) and `torch/_utils.py` (`_rebuild_tensor_v2`); zip per PKWARE APPNOTE 6.3.
//! Archives over 4 GiB would need zip64 and are refused.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Records are aligned like PyTorch's writer does, so that `torch.load(mmap=True)` works.
const ALIGN: usize = 64;

/// Writes `tensors` (as f32) to `path` in the `torch.save` format.
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut zip = ZipWriter::default();
    let mut storages = Vec::with_capacity(tensors.len());
    for (i, tensor) in tensors.values().enumerate() {
        let values = tensor
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        storages.push((format!("archive/data/{i}"), bytes));
    }
    zip.add("archive/data.pkl", &pickle_state_dict(tensors));
    zip.add("archive/byteorder", b"little");
    for (name, bytes) in &storages {
        zip.add(name, bytes);
    }
    zip.add("archive/version", b"3\n");
    let bytes = zip.finish().map_err(|e| Error::weight_file(path, e))?;
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(path, e))?;
    file.flush().map_err(|e| Error::io(path, e))
}

/// An uncompressed zip archive of `entries` laid out as PyTorch lays them (64-byte aligned
/// data); for building test and fuzzing inputs for [`crate::pth`].
pub fn zip_stored(entries: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut zip = ZipWriter::default();
    for (name, data) in entries {
        zip.add(name, data);
    }
    zip.finish().map_err(Error::input)
}

// ------------------------------------------------------------------------------------------
// Pickle (protocol 2).

struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn string(&mut self, s: &str) {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: usize) {
        match i32::try_from(v) {
            Ok(small) => {
                self.0.push(b'J'); // BININT
                self.0.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => {
                self.0.extend_from_slice(&[0x8a, 9]); // LONG1, 9 bytes two's complement
                self.0.extend_from_slice(&(v as u64).to_le_bytes());
                self.0.push(0);
            }
        }
    }

    fn tuple_of(&mut self, values: &[usize]) {
        self.0.push(b'(');
        for &v in values {
            self.int(v);
        }
        self.0.push(b't');
    }

    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(b")R"); // EMPTY_TUPLE, REDUCE
    }
}

/// `OrderedDict(name -> _rebuild_tensor_v2(storage_i, 0, shape, stride, False, OrderedDict()))`.
fn pickle_state_dict(tensors: &BTreeMap<String, Tensor>) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]); // PROTO 2
    p.empty_ordered_dict();
    p.0.push(b'('); // MARK
    for (i, (name, tensor)) in tensors.iter().enumerate() {
        let dims = tensor.dims();
        let numel: usize = dims.iter().product();
        let mut stride = vec![1usize; dims.len()];
        for d in (0..dims.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * dims[d + 1];
        }
        p.string(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(b'(');
        // Persistent id ('storage', torch.FloatStorage, key, location, numel).
        p.0.push(b'(');
        p.string("storage");
        p.global("torch", "FloatStorage");
        p.string(&i.to_string());
        p.string("cpu");
        p.int(numel);
        p.0.extend_from_slice(b"tQ"); // TUPLE, BINPERSID
        p.int(0);
        p.tuple_of(dims);
        p.tuple_of(&stride);
        p.0.push(0x89); // NEWFALSE: requires_grad
        p.empty_ordered_dict(); // backward_hooks
        p.0.extend_from_slice(b"tR"); // TUPLE, REDUCE
    }
    p.0.extend_from_slice(b"u."); // SETITEMS, STOP
    p.0
}

// ------------------------------------------------------------------------------------------
// Zip (stored, no compression).

#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    count: u16,
    overflow: bool,
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn u32_or_flag(v: usize, overflow: &mut bool) -> [u8; 4] {
    u32::try_from(v)
        .unwrap_or_else(|_| {
            *overflow = true;
            u32::MAX
        })
        .to_le_bytes()
}

impl ZipWriter {
    fn add(&mut self, name: &str, data: &[u8]) {
        let offset = self.out.len();
        let header_len = 30 + name.len();
        // Pad with an extra field so the data starts on an ALIGN boundary.
        let pad = (ALIGN - (offset + header_len + 4) % ALIGN) % ALIGN;
        let crc = crc32(data).to_le_bytes();
        let size = u32_or_flag(data.len(), &mut self.overflow);
        let mut common = Vec::with_capacity(26);
        // version needed, flags, method (stored), time, date (1980-01-01)
        common.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        common.extend_from_slice(&crc);
        common.extend_from_slice(&size);
        common.extend_from_slice(&size);
        common.extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.out.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04]);
        self.out.extend_from_slice(&common);
        self.out
            .extend_from_slice(&((pad + 4) as u16).to_le_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(&[0x46, 0x42]); // extra field id "FB", as PyTorch pads
        self.out.extend_from_slice(&(pad as u16).to_le_bytes());
        self.out.extend(std::iter::repeat_n(b'Z', pad));
        self.out.extend_from_slice(data);

        self.central
            .extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0]);
        self.central.extend_from_slice(&common);
        // extra and comment lengths, disk, internal and external attributes
        self.central.extend_from_slice(&[0; 12]);
        let local = u32_or_flag(offset, &mut self.overflow);
        self.central.extend_from_slice(&local);
        self.central.extend_from_slice(name.as_bytes());
        self.count = self.count.saturating_add(1);
    }

    fn finish(mut self) -> std::result::Result<Vec<u8>, String> {
        let cd_offset = self.out.len();
        let cd_size = self.central.len();
        let offset = u32_or_flag(cd_offset, &mut self.overflow);
        let size = u32_or_flag(cd_size, &mut self.overflow);
        if self.overflow || self.count == u16::MAX {
            return Err(
                "over 4 GiB or 65535 tensors: pytorch_model.bin would need zip64, \
                        which is not supported; convert to safetensors instead"
                    .into(),
            );
        }
        self.out.extend_from_slice(&self.central);
        self.out
            .extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
        self.out.extend_from_slice(&self.count.to_le_bytes());
        self.out.extend_from_slice(&self.count.to_le_bytes());
        self.out.extend_from_slice(&size);
        self.out.extend_from_slice(&offset);
        self.out.extend_from_slice(&[0, 0]);
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
