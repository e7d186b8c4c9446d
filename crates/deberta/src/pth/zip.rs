//! The zip container of `torch.save`: the central directory, read with every size checked
//! against the file before anything is allocated. Only stored (uncompressed) entries can be
//! read, which is all PyTorch writes.
//!
//! Layout per PKWARE APPNOTE 6.3 (end of central directory, its zip64 form, central directory
//! headers, the zip64 extended-information extra field, local file headers).

use super::{PthError, Source};

/// Central directories larger than this are refused (a 100,000-tensor checkpoint needs ~10 MB).
pub const MAX_CENTRAL_DIRECTORY: u64 = 64 << 20;

const EOCD: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

/// One file of the archive, as its central directory header describes it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    method: u16,
    compressed: u64,
    pub size: u64,
    local_header: u64,
}

/// The entries of a zip archive.
#[derive(Debug)]
pub struct Archive {
    pub entries: Vec<Entry>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, PthError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| PthError::zip("record is cut short"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, PthError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| PthError::zip("record is cut short"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, PthError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| PthError::zip("record is cut short"))
}

fn read(source: &dyn Source, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, PthError> {
    let end = offset
        .checked_add(len)
        .filter(|&end| end <= source.len())
        .ok_or_else(|| {
            PthError::zip(format!(
                "{what} ({len} bytes at offset {offset}) lies past the end of the file ({} bytes)",
                source.len()
            ))
        })?;
    let mut buf = vec![0u8; (end - offset) as usize];
    source.read_at(offset, &mut buf)?;
    Ok(buf)
}

impl Archive {
    /// Reads the central directory of `source`.
    pub fn open(source: &dyn Source) -> Result<Self, PthError> {
        let len = source.len();
        // The end record is 22 bytes plus a comment of at most 65535.
        let tail_len = len.min(22 + 0xFFFF);
        let tail = read(source, len - tail_len, tail_len, "end of central directory")?;
        let at = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| {
                u32_at(&tail, i).ok() == Some(EOCD)
                    && u16_at(&tail, i + 20).ok().map(usize::from) == Some(tail.len() - i - 22)
            })
            .ok_or_else(|| {
                PthError::zip("no end of central directory record: not a zip archive (torch.save)")
            })?;
        let eocd_pos = len - tail_len + at as u64;
        let mut count = u64::from(u16_at(&tail, at + 10)?);
        let mut cd_size = u64::from(u32_at(&tail, at + 12)?);
        let mut cd_offset = u64::from(u32_at(&tail, at + 16)?);
        if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            let locator = eocd_pos
                .checked_sub(20)
                .ok_or_else(|| PthError::zip("zip64 locator missing"))?;
            let loc = read(
                source,
                locator,
                20,
                "zip64 end of central directory locator",
            )?;
            if u32_at(&loc, 0)? != ZIP64_LOCATOR {
                return Err(PthError::zip(
                    "zip64 end of central directory locator missing",
                ));
            }
            let record = u64_at(&loc, 8)?;
            let rec = read(source, record, 56, "zip64 end of central directory record")?;
            if u32_at(&rec, 0)? != ZIP64_EOCD {
                return Err(PthError::zip(
                    "zip64 end of central directory record missing",
                ));
            }
            count = u64_at(&rec, 32)?;
            cd_size = u64_at(&rec, 40)?;
            cd_offset = u64_at(&rec, 48)?;
        }
        if cd_size > MAX_CENTRAL_DIRECTORY {
            return Err(PthError::limit(
                "zip central directory size",
                cd_size,
                MAX_CENTRAL_DIRECTORY,
            ));
        }
        if count > cd_size / 46 {
            return Err(PthError::zip(format!(
                "{count} entries cannot fit a central directory of {cd_size} bytes"
            )));
        }
        let cd = read(source, cd_offset, cd_size, "central directory")?;
        let mut entries = Vec::with_capacity(count as usize);
        let mut pos = 0usize;
        for _ in 0..count {
            if u32_at(&cd, pos)? != CENTRAL {
                return Err(PthError::zip(format!(
                    "bad central directory header at offset {}",
                    cd_offset + pos as u64
                )));
            }
            let method = u16_at(&cd, pos + 10)?;
            let mut compressed = u64::from(u32_at(&cd, pos + 20)?);
            let mut size = u64::from(u32_at(&cd, pos + 24)?);
            let name_len = usize::from(u16_at(&cd, pos + 28)?);
            let extra_len = usize::from(u16_at(&cd, pos + 30)?);
            let comment_len = usize::from(u16_at(&cd, pos + 32)?);
            let mut local_header = u64::from(u32_at(&cd, pos + 42)?);
            let name_start = pos + 46;
            let extra_start = name_start + name_len;
            let next = extra_start + extra_len + comment_len;
            let name = cd
                .get(name_start..extra_start)
                .ok_or_else(|| PthError::zip("central directory entry name is cut short"))?;
            let name = String::from_utf8_lossy(name).into_owned();
            let extra = cd
                .get(extra_start..extra_start + extra_len)
                .ok_or_else(|| PthError::zip(format!("entry `{name}`: extra field cut short")))?;
            // Zip64 extended information: the 8-byte values of the fields set to 0xFFFFFFFF.
            let mut e = 0usize;
            while e + 4 <= extra.len() {
                let id = u16_at(extra, e)?;
                let n = usize::from(u16_at(extra, e + 2)?);
                if id == 1 {
                    let mut field = e + 4;
                    for value in [&mut size, &mut compressed, &mut local_header] {
                        if *value == 0xFFFF_FFFF {
                            *value = u64_at(extra, field).map_err(|_| {
                                PthError::zip(format!("entry `{name}`: zip64 field cut short"))
                            })?;
                            field += 8;
                        }
                    }
                }
                e += 4 + n;
            }
            entries.push(Entry {
                name,
                method,
                compressed,
                size,
                local_header,
            });
            pos = next;
        }
        Ok(Self { entries })
    }

    /// The entry called `name`.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Where the bytes of a stored entry start in the file; checks they are all there.
    pub fn data_start(&self, source: &dyn Source, entry: &Entry) -> Result<u64, PthError> {
        let what = |reason: String| PthError::zip(format!("entry `{}`: {reason}", entry.name));
        if entry.method != 0 {
            return Err(what(format!(
                "compression method {} (torch.save stores entries uncompressed; only those \
                 are read)",
                entry.method
            )));
        }
        if entry.compressed != entry.size {
            return Err(what(format!(
                "stored entry has compressed size {} but size {}",
                entry.compressed, entry.size
            )));
        }
        let header = read(source, entry.local_header, 30, "local file header")
            .map_err(|e| what(e.to_string()))?;
        if u32_at(&header, 0)? != LOCAL {
            return Err(what("bad local file header".into()));
        }
        let skip = 30 + u64::from(u16_at(&header, 26)?) + u64::from(u16_at(&header, 28)?);
        let start = entry.local_header + skip;
        match start.checked_add(entry.size) {
            Some(end) if end <= source.len() => Ok(start),
            _ => Err(what(format!(
                "{} bytes at offset {start} lie past the end of the file ({} bytes)",
                entry.size,
                source.len()
            ))),
        }
    }

    /// The whole contents of a stored entry, at most `max` bytes.
    pub fn read_entry(
        &self,
        source: &dyn Source,
        entry: &Entry,
        max: u64,
    ) -> Result<Vec<u8>, PthError> {
        if entry.size > max {
            return Err(PthError::limit(
                &format!("size of zip entry `{}`", entry.name),
                entry.size,
                max,
            ));
        }
        let start = self.data_start(source, entry)?;
        read(source, start, entry.size, &entry.name)
    }
}
