//! A bounded reader of `pytorch_model.bin` (`torch.save(state_dict)`): a zip archive with a
//! pickled dict of tensors (`<prefix>/data.pkl`) and one raw little-endian storage per tensor
//! (`<prefix>/data/<key>`).
//!
//! It reads only the subset that `torch.save` and transformers' `save_pretrained` write (see
//! [`pickle`]) and treats the file as untrusted: no code runs, every count is capped
//! ([`Limits`]), every tensor's shape, stride and offset are checked against its storage and the
//! storage against its zip entry before anything is allocated, and every failure is a
//! [`PthError`] that says what was wrong. Nothing recurses, so no input overflows the stack.
//!
//! The writer of the same format is [`crate::export::pytorch`].

pub mod pickle;
pub mod zip;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

pub use pickle::Limits;

/// The largest `data.pkl` read (a 100,000-tensor state dict pickles to ~15 MB).
pub const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// Why a `pytorch_model.bin` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    /// The zip container is malformed or uses what torch.save never writes.
    #[error("zip archive: {0}")]
    Zip(String),
    /// The pickle is malformed or outside the supported subset.
    #[error("pickle (data.pkl) at byte {offset}: {reason}")]
    Pickle { offset: usize, reason: String },
    /// A count or size is over its limit.
    #[error("{what} {value} is over the limit of {limit}")]
    Limit {
        what: String,
        value: u64,
        limit: u64,
    },
    /// A tensor's description does not fit its storage, or its dtype cannot be used.
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
    /// Reading the file failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl PthError {
    pub(crate) fn zip(reason: impl Into<String>) -> Self {
        PthError::Zip(reason.into())
    }

    pub(crate) fn pickle(offset: usize, reason: impl Into<String>) -> Self {
        PthError::Pickle {
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn limit(what: &str, value: u64, limit: u64) -> Self {
        PthError::Limit {
            what: what.to_string(),
            value,
            limit,
        }
    }

    fn tensor(name: &str, reason: impl Into<String>) -> Self {
        PthError::Tensor {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// Random-access bytes: a file, or a buffer (tests, fuzzing).
pub trait Source: Send + Sync {
    /// The length in bytes.
    fn len(&self) -> u64;
    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; the caller has checked the range against [`Source::len`].
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Source for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| self.get(o..o.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A file read with positioned reads (not memory-mapped: a file truncated while open gives a
/// read error, not SIGBUS).
struct FileSource {
    file: Mutex<File>,
    len: u64,
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("file lock poisoned"))?;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// Element types of torch storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Dtype::F64,
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// Whether it is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

/// One tensor of the state dict: a view `(offset, shape, stride)` into a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    /// The storage key: its data is the zip entry `<prefix>/data/<key>`.
    pub storage: String,
    /// Elements in the storage, as the pickle declares.
    pub storage_numel: u64,
    /// Offset into the storage, in elements.
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

impl TensorInfo {
    /// Elements of the tensor, and one past the last storage element it reads.
    fn extent(&self) -> Option<(u64, u64)> {
        let mut numel = 1u64;
        let mut last = self.offset;
        for (&d, &s) in self.shape.iter().zip(&self.stride) {
            numel = numel.checked_mul(d)?;
            if d > 0 {
                last = last.checked_add((d - 1).checked_mul(s)?)?;
            }
        }
        Some((numel, if numel == 0 { self.offset } else { last + 1 }))
    }
}

/// A checked tensor of the archive: its view and where its storage lies in the file.
#[derive(Debug, Clone)]
struct Located {
    info: TensorInfo,
    numel: u64,
    /// File offset of the first storage element the view reads.
    start: u64,
}

/// An opened `pytorch_model.bin`: the tensor descriptions, checked; data read on demand.
pub struct PthFile {
    source: Box<dyn Source>,
    tensors: Vec<(String, Located)>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for PthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PthFile")
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl PthFile {
    /// Opens and checks the file at `path`.
    pub fn open(path: &Path) -> Result<Self, PthError> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Self::from_source(Box::new(FileSource {
            file: Mutex::new(file),
            len,
        }))
    }

    /// Reads an archive held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, PthError> {
        Self::from_source(Box::new(bytes))
    }

    fn from_source(source: Box<dyn Source>) -> Result<Self, PthError> {
        Self::with_limits(source, Limits::default())
    }

    /// Opens `source` with the given pickle limits.
    pub fn with_limits(source: Box<dyn Source>, limits: Limits) -> Result<Self, PthError> {
        let archive = zip::Archive::open(source.as_ref())?;
        let pkl = archive
            .entries
            .iter()
            .filter(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
            .min_by_key(|e| e.name.len())
            .ok_or_else(|| PthError::zip("no data.pkl entry: not a torch.save archive"))?;
        let prefix = pkl.name.strip_suffix("data.pkl").unwrap_or("").to_string();
        if let Some(order) = archive.find(&format!("{prefix}byteorder")) {
            let order = archive.read_entry(source.as_ref(), order, 16)?;
            if order != b"little" {
                return Err(PthError::zip(format!(
                    "byteorder is `{}`; only little-endian archives are supported",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
        let data = archive.read_entry(source.as_ref(), pkl, MAX_PICKLE_BYTES)?;
        let dict = pickle::state_dict(&data, limits)?;
        drop(data);

        let mut storages: HashMap<String, (u64, u64)> = HashMap::new();
        let mut tensors = Vec::with_capacity(dict.len());
        let mut index = HashMap::with_capacity(dict.len());
        for (name, info) in dict {
            let elem = info.dtype.size();
            let (numel, end) = info.extent().ok_or_else(|| {
                PthError::tensor(
                    &name,
                    format!(
                        "shape {:?} with stride {:?} at offset {} overflows 64 bits",
                        info.shape, info.stride, info.offset
                    ),
                )
            })?;
            if end > info.storage_numel {
                return Err(PthError::tensor(
                    &name,
                    format!(
                        "shape {:?} with stride {:?} at offset {} reads storage element {} \
                         but storage `{}` declares {} elements",
                        info.shape,
                        info.stride,
                        info.offset,
                        end.saturating_sub(1),
                        info.storage,
                        info.storage_numel
                    ),
                ));
            }
            if numel > info.storage_numel {
                return Err(PthError::tensor(
                    &name,
                    format!(
                        "shape {:?} has {numel} elements, more than the {} of storage `{}` \
                         (expanded views are not supported)",
                        info.shape, info.storage_numel, info.storage
                    ),
                ));
            }
            let entry_name = format!("{prefix}data/{}", info.storage);
            let (data_start, entry_size) = match storages.get(&entry_name) {
                Some(&found) => found,
                None => {
                    let entry = archive.find(&entry_name).ok_or_else(|| {
                        PthError::tensor(
                            &name,
                            format!("its storage entry `{entry_name}` is not in the archive"),
                        )
                    })?;
                    let found = (archive.data_start(source.as_ref(), entry)?, entry.size);
                    storages.insert(entry_name.clone(), found);
                    found
                }
            };
            let needed = info.storage_numel.saturating_mul(elem);
            if needed > entry_size {
                return Err(PthError::tensor(
                    &name,
                    format!(
                        "shape {:?} ({:?}) needs storage `{}` of {} elements ({needed} bytes) \
                         but its zip entry holds {entry_size} bytes",
                        info.shape, info.dtype, info.storage, info.storage_numel
                    ),
                ));
            }
            let start = data_start + info.offset * elem;
            index.insert(name.clone(), tensors.len());
            tensors.push((name, Located { info, numel, start }));
        }
        Ok(Self {
            source,
            tensors,
            index,
        })
    }

    /// Tensor names and shapes, in the order of the state dict.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &TensorInfo)> {
        self.tensors.iter().map(|(n, l)| (n.as_str(), &l.info))
    }

    /// The description of tensor `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .map(|(_, l)| &l.info)
    }

    /// Reads tensor `name` as f32 values in row-major order (floating-point dtypes only).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, PthError> {
        let located = self
            .index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .map(|(_, l)| l)
            .ok_or_else(|| PthError::tensor(name, "not in the archive"))?;
        let info = &located.info;
        if !info.dtype.is_float() {
            return Err(PthError::tensor(
                name,
                format!(
                    "stored as {:?}; only floating-point weights are supported",
                    info.dtype
                ),
            ));
        }
        let elem = info.dtype.size();
        // Checked at open: offset + extent <= storage_numel, storage bytes <= entry size.
        let (numel, end) = info
            .extent()
            .ok_or_else(|| PthError::tensor(name, "extent overflows"))?;
        let span = (end - info.offset) * elem;
        let numel = usize::try_from(numel.min(located.numel))
            .map_err(|_| PthError::tensor(name, "too large for this platform"))?;
        let span = usize::try_from(span)
            .map_err(|_| PthError::tensor(name, "too large for this platform"))?;
        let mut bytes = vec![0u8; span];
        self.source
            .read_at(located.start, &mut bytes)
            .map_err(|e| PthError::tensor(name, format!("reading its storage: {e}")))?;
        let value = |i: usize| -> f32 {
            let at = i * elem as usize;
            let b = &bytes[at..at + elem as usize];
            match info.dtype {
                Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                Dtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                _ => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            }
        };
        let mut out = Vec::with_capacity(numel);
        if numel == 0 {
            return Ok(out);
        }
        if is_contiguous(&info.shape, &info.stride) {
            out.extend((0..numel).map(value));
            return Ok(out);
        }
        // Walk the view in row-major order with an odometer over the dimensions.
        let shape: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
        let stride: Vec<usize> = info.stride.iter().map(|&s| s as usize).collect();
        let mut counter = vec![0usize; shape.len()];
        let mut at = 0usize;
        for _ in 0..numel {
            out.push(value(at));
            for d in (0..shape.len()).rev() {
                counter[d] += 1;
                at += stride[d];
                if counter[d] < shape[d] {
                    break;
                }
                at -= stride[d] * shape[d];
                counter[d] = 0;
            }
        }
        Ok(out)
    }
}

/// Whether `stride` is the row-major stride of `shape` (size-1 dimensions may have any stride).
fn is_contiguous(shape: &[u64], stride: &[u64]) -> bool {
    let mut expected = 1u64;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}
