//! Memory limits: an estimate of the big allocations checked before they are made, so an
//! oversized input, config or benchmark shape ends in a named error instead of an allocation
//! failure that aborts the process.
//!
//! The limit is [`set_max_memory`] (the CLI's `--max-memory` or `DEBERTA_MAX_MEMORY`, read by
//! the CLI: the library reads no environment variable), else 80% of the smaller of physical memory
//! (`MemTotal` in `/proc/meminfo`) and the address-space limit (`ulimit -v`). Where neither can
//! be read, 64 GiB.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::DebertaV2Config;
use crate::{Error, Result};

/// 0 = not set: use the default.
static MAX_MEMORY: AtomicU64 = AtomicU64::new(0);

/// [`default_max_memory`], read once.
static DEFAULT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The limit used when the machine's memory cannot be read.
pub const FALLBACK_MAX_MEMORY: u64 = 64 << 30;

/// Sets the process-wide memory limit in bytes (`None`: back to the default).
pub fn set_max_memory(bytes: Option<u64>) {
    MAX_MEMORY.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// The memory limit in bytes now in force.
pub fn max_memory() -> u64 {
    match MAX_MEMORY.load(Ordering::Relaxed) {
        0 => *DEFAULT.get_or_init(default_max_memory),
        set => set,
    }
}

/// 80% of the smaller of physical memory and the address-space limit.
pub fn default_max_memory() -> u64 {
    let physical = read_meminfo_total();
    let address_space = read_address_space_limit();
    match (physical, address_space) {
        (Some(p), Some(a)) => p.min(a) / 5 * 4,
        (Some(x), None) | (None, Some(x)) => x / 5 * 4,
        (None, None) => FALLBACK_MAX_MEMORY,
    }
}

fn read_meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

fn read_address_space_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    // "Max address space   <soft>   <hard>   bytes"
    line.trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Parses `123`, `512M`, `8G`, `8GiB`, `1.5GB`, `2T` (powers of 1024).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 8G, 512M, 1073741824)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use K, M, G or T)"
            ))
        }
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as u64)
}

/// `bytes` as `12.3 GiB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 40) as f64 {
        format!("{:.1} TiB", b / (1u64 << 40) as f64)
    } else if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// Fails with [`Error::MemoryLimit`] when `bytes` is over the limit.
pub fn check(what: impl FnOnce() -> String, bytes: u64) -> Result<()> {
    let limit = max_memory();
    if bytes > limit {
        return Err(Error::MemoryLimit {
            what: what(),
            needed: bytes,
            limit,
        });
    }
    Ok(())
}

/// A generous estimate of the peak memory of a forward pass on `batch x len` tokens beyond the
/// weights: the `[B, L, L]` masks, a few `[B, heads, L, L]` f32 score tensors (content and
/// both position terms, softmax), the relative-position terms `[B, heads, L, 2 x span]` and the
/// activations of one layer.
pub fn forward_bytes(cfg: &DebertaV2Config, batch: usize, len: usize) -> u64 {
    let b = batch as u128;
    let l = len as u128;
    let heads = cfg.num_attention_heads as u128;
    let span = if cfg.relative_attention {
        2 * cfg.position_span() as u128
    } else {
        0
    };
    let hidden = cfg.hidden_size as u128;
    let inter = cfg.intermediate_size as u128;
    let masks = b * l * l * (1 + 4);
    let scores = 4 * b * heads * l * l * 4;
    let positions = 2 * b * heads * l * span.min(l.max(1) * 2) * 4;
    let activations = b * l * (8 * hidden + 2 * inter) * 4;
    u64::try_from(masks + scores + positions + activations).unwrap_or(u64::MAX)
}

/// Checks a forward pass on `batch x len` tokens against the limit.
pub fn check_forward(cfg: &DebertaV2Config, batch: usize, len: usize) -> Result<()> {
    check(
        || {
            format!(
                "a forward pass on {batch} x {len} tokens ({} heads: attention is batch x heads \
                 x len x len)",
                cfg.num_attention_heads
            )
        },
        forward_bytes(cfg, batch, len),
    )
}

/// A generous estimate of the peak memory of a forward pass on an unpadded batch of sequences
/// of `lens`: the activations of one layer over all their tokens, plus the attention of the
/// longest sequence (as [`forward_bytes`] counts it; the sequences' attention tasks keep
/// per-worker scratch only).
pub fn unpadded_bytes(cfg: &DebertaV2Config, lens: &[usize]) -> u64 {
    let tokens = lens.iter().map(|&l| l as u128).sum::<u128>();
    let longest = lens.iter().copied().max().unwrap_or(0);
    let row = (8 * cfg.hidden_size as u128 + 2 * cfg.intermediate_size as u128) * 4;
    let total = tokens * row + forward_bytes(cfg, 1, longest) as u128;
    u64::try_from(total).unwrap_or(u64::MAX)
}

/// Checks a forward pass on an unpadded batch of sequences of `lens` against the limit.
pub fn check_unpadded(cfg: &DebertaV2Config, lens: &[usize]) -> Result<()> {
    check(
        || {
            let tokens: usize = lens.iter().sum();
            let longest = lens.iter().copied().max().unwrap_or(0);
            format!(
                "an unpadded forward pass on {} sequences ({tokens} tokens, the longest {longest})",
                lens.len()
            )
        },
        unpadded_bytes(cfg, lens),
    )
}

/// A generous estimate of the peak memory of one training step on `batch x len` tokens beyond
/// the weights: every layer's retained activations (the autograd graph keeps about eight
/// `[B, heads, L, L]` f32 tensors and twenty `[B, L, hidden]`-sized ones per layer), plus the
/// gradients and AdamW's two moments (three more copies of the weights).
pub fn training_bytes(cfg: &DebertaV2Config, batch: usize, len: usize) -> u64 {
    let b = batch as u128;
    let l = len as u128;
    let heads = cfg.num_attention_heads as u128;
    let hidden = cfg.hidden_size as u128;
    let inter = cfg.intermediate_size as u128;
    let layers = cfg.num_hidden_layers.max(1) as u128;
    let per_layer = 8 * b * heads * l * l * 4 + b * l * (20 * hidden + 4 * inter) * 4;
    let state = 3 * cfg.weights_bytes() as u128;
    u64::try_from(layers * per_layer + forward_bytes(cfg, batch, len) as u128 + state)
        .unwrap_or(u64::MAX)
}

/// Checks a training step on `batch x len` tokens against the limit.
pub fn check_training(cfg: &DebertaV2Config, batch: usize, len: usize) -> Result<()> {
    check(
        || {
            format!(
                "a training step on {batch} x {len} tokens ({} layers keep their activations for \
                 the backward pass; lower --batch-size or --max-length, or use \
                 --gradient-accumulation)",
                cfg.num_hidden_layers
            )
        },
        training_bytes(cfg, batch, len),
    )
}

/// Checks a new f32 tensor of `shape` against the limit.
pub fn check_tensor(name: &str, shape: &[usize]) -> Result<()> {
    let bytes = shape
        .iter()
        .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    check(|| format!("weight `{name}` of shape {shape:?}"), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5gb").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("1e30").is_err());
    }

    #[test]
    fn default_is_positive() {
        assert!(default_max_memory() > 0);
    }
}
