//! `deberta bench --mixed MIN-MAX`: a workload of mixed lengths. Each timed batch holds
//! `--batch` sequences whose lengths are drawn uniformly from `MIN..=MAX` (a fixed seed, a new
//! draw per batch); the same batch runs unpadded (`TaskModel::forward_sequences`: each
//! sequence at its own length on the fused CPU path) and padded to its longest with a mask
//! (`TaskModel::forward`, as a padded engine runs it), interleaved, and both are reported.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use deberta::{ForwardOptions, HeadKind, Labels, ModelInput, Sequence, TaskModel};

/// Parses `MIN-MAX` (e.g. `8-256`).
pub fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{text}` is not a length range MIN-MAX (e.g. 8-256)");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: usize = lo.trim().parse().map_err(|_| bad())?;
    let hi: usize = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(format!("`{text}`: need 1 <= MIN <= MAX"));
    }
    Ok((lo, hi))
}

/// The timings of the two ways of running the workload, as JSON fields.
pub fn run(
    model: &TaskModel,
    (lo, hi): (usize, usize),
    batch: usize,
    (warmup, iters): (usize, usize),
) -> Result<serde_json::Value> {
    if model.kind() == HeadKind::MultipleChoice {
        bail!("--mixed runs one sequence per row; choose a head other than multiple-choice");
    }
    deberta::limits::check_forward(model.config(), batch, hi)?;
    let vocab = model.config().vocab_size;
    let mut draw = Lcg(0x5eed);
    let batches: Vec<Vec<Vec<u32>>> = (0..warmup + iters)
        .map(|_| {
            (0..batch)
                .map(|_| {
                    let len = lo + draw.below(hi - lo + 1);
                    (0..len)
                        .map(|_| 4 + draw.below(vocab.max(5) - 4) as u32)
                        .collect()
                })
                .collect()
        })
        .collect();
    let (mut unpadded, mut padded) = (Vec::new(), Vec::new());
    let (mut real, mut with_padding) = (0usize, 0usize);
    for (i, seqs) in batches.iter().enumerate() {
        let input = padded_input(seqs)?;
        let sequences: Vec<Sequence> = seqs.iter().map(|s| Sequence::new(s)).collect();
        let time_unpadded = || -> Result<f64> {
            let start = Instant::now();
            model.forward_sequences(&sequences)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        let time_padded = || -> Result<f64> {
            let start = Instant::now();
            model.forward(&input, Labels::default(), ForwardOptions::default())?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        // Alternate which runs first, so neither always finds the caches warm.
        let (u, p) = if i % 2 == 0 {
            let u = time_unpadded()?;
            (u, time_padded()?)
        } else {
            let p = time_padded()?;
            (time_unpadded()?, p)
        };
        if i >= warmup {
            unpadded.push(u);
            padded.push(p);
            real += seqs.iter().map(Vec::len).sum::<usize>();
            with_padding += seqs.len() * seqs.iter().map(Vec::len).max().unwrap_or(0);
        }
    }
    let (u, p) = (
        super::bench::median_of(&mut unpadded),
        super::bench::median_of(&mut padded),
    );
    let per_batch = real as f64 / iters as f64;
    Ok(serde_json::json!({
        "mixed_lengths": [lo, hi],
        "unpadded_runs": model.runs_unpadded(),
        "unpadded_median_ms": u,
        "padded_median_ms": p,
        "unpadded_tokens_per_s": per_batch / (u / 1e3),
        "padded_tokens_per_s": per_batch / (p / 1e3),
        "speedup": p / u,
        "padded_over_real_tokens": with_padding as f64 / real.max(1) as f64,
        "unpadded_times_ms": unpadded,
        "padded_times_ms": padded,
    }))
}

/// Right-padded ids (pad 0) with a mask, `[B, longest]`.
fn padded_input(seqs: &[Vec<u32>]) -> Result<ModelInput> {
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for s in seqs {
        let n = longest - s.len();
        ids.extend(s.iter().copied().chain(std::iter::repeat_n(0, n)));
        mask.extend(std::iter::repeat_n(1u32, s.len()).chain(std::iter::repeat_n(0, n)));
    }
    let shape = (seqs.len(), longest);
    Ok(
        ModelInput::from_ids(Tensor::from_vec(ids, shape, &Device::Cpu)?)
            .with_attention_mask(Tensor::from_vec(mask, shape, &Device::Cpu)?),
    )
}

/// A small deterministic generator (the workload is the same on every run).
struct Lcg(u64);

impl Lcg {
    /// Uniform in `0..n` (`n` >= 1).
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}
