//! A memory-mapped safetensors file that releases each tensor's pages once it has been copied
//! into an f32 tensor, so loading a checkpoint peaks at one copy of the weights instead of two
//! (the mapped file plus the copies).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use memmap2::{Mmap, UncheckedAdvice};
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result};

struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range in the file.
    start: usize,
    end: usize,
}

pub(crate) struct SafetensorsFile {
    mmap: Mmap,
    tensors: HashMap<String, Entry>,
}

impl SafetensorsFile {
    /// Maps the file and validates its header (offsets inside the file, sizes matching shapes).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is mapped read-only; like every mmap-based loader we rely on it not
        // being modified while the checkpoint is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let bad = |e: &dyn std::fmt::Display| {
            Error::weight_file(path, format!("not a valid safetensors file: {e}"))
        };
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| bad(&e))?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (name, info) in metadata.tensors() {
            let (begin, end) = info.data_offsets;
            let entry = Entry {
                dtype: candle_dtype(info.dtype)
                    .map_err(|e| bad(&format!("tensor `{name}`: {e}")))?,
                shape: info.shape.clone(),
                start: data_start + begin,
                end: data_start + end,
            };
            tensors.insert(name, entry);
        }
        Ok(Self { mmap, tensors })
    }

    /// Every tensor name with its stored shape.
    pub fn names(&self) -> Vec<(String, Vec<usize>)> {
        self.tensors
            .iter()
            .map(|(n, e)| (n.clone(), e.shape.clone()))
            .collect()
    }

    /// Copies one tensor out of the map (in its stored dtype) and drops its pages.
    pub fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let entry = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no tensor `{name}`")))?;
        let bytes = self
            .mmap
            .get(entry.start..entry.end)
            .ok_or_else(|| candle_core::Error::Msg("data outside the file".into()))?;
        let tensor = Tensor::from_raw_buffer(bytes, entry.dtype, &entry.shape, device)?;
        // SAFETY: the map is read-only and file-backed, so MADV_DONTNEED only evicts pages; a
        // later read of the same bytes faults them back in from the file.
        #[cfg(unix)]
        let _ = unsafe {
            self.mmap.unchecked_advise_range(
                UncheckedAdvice::DontNeed,
                entry.start,
                entry.end - entry.start,
            )
        };
        Ok(tensor)
    }
}

fn candle_dtype(dtype: Dtype) -> std::result::Result<DType, String> {
    Ok(match dtype {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::U8 => DType::U8,
        other => return Err(format!("unsupported dtype {other:?}")),
    })
}
