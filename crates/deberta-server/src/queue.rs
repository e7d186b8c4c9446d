//! The queue of model units waiting for the model thread, and how a batch is cut from it.
//!
//! Every model unit (a text, a pair, a window of a long text, the choices of one question) is
//! its own entry, so the units of one request (zero-shot labels, rerank texts, a client batch)
//! spread over as many batches as the token budget needs. A batch takes entries in arrival order
//! while their tokens stay within `max_batch_tokens` and their count within
//! `max_batch_requests`; entries whose client has gone away are dropped on the way.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use deberta_tasks::{Feature, UnitOutput};
use tokio::sync::oneshot;

use crate::error::ApiError;

/// What the model thread sends back for one unit.
#[derive(Debug)]
pub(crate) struct UnitReply {
    /// The unit's outputs, or why the forward pass failed.
    pub result: Result<UnitOutput, ApiError>,
    /// From enqueueing to the start of its batch.
    pub queue: Duration,
    /// The forward pass of its sub-batch.
    pub inference: Duration,
}

/// What the request side sends the model thread.
pub(crate) enum Job {
    /// A unit to compute.
    Unit(Entry),
    /// Finish the units queued so far, then stop.
    Stop,
}

/// One model unit waiting in the queue.
pub(crate) struct Entry {
    /// The unit's rows (one, or one per choice).
    pub features: Vec<Feature>,
    /// When it was queued.
    pub queued: Instant,
    /// Where its outputs go; closed when the client has gone away.
    pub reply: oneshot::Sender<UnitReply>,
}

impl Entry {
    /// A new entry and the receiver of its outputs.
    pub fn new(features: Vec<Feature>) -> (Self, oneshot::Receiver<UnitReply>) {
        let (reply, rx) = oneshot::channel();
        let entry = Entry {
            features,
            queued: Instant::now(),
            reply,
        };
        (entry, rx)
    }

    /// The longest row.
    pub fn len(&self) -> usize {
        self.features.iter().map(|f| f.ids.len()).max().unwrap_or(0)
    }

    /// Tokens the unit costs (its rows padded to its longest).
    pub fn tokens(&self) -> usize {
        self.len() * self.features.len()
    }
}

/// The limits of one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Most tokens.
    pub max_tokens: usize,
    /// Most units.
    pub max_units: usize,
}

/// Takes the next batch from the front of `queue`: entries in order while the budget holds
/// (always at least one live entry), skipping entries nobody waits for any more.
pub(crate) fn next_batch(queue: &mut VecDeque<Entry>, limits: BatchLimits) -> Vec<Entry> {
    let mut batch = Vec::new();
    let mut tokens = 0;
    while let Some(entry) = queue.front() {
        if entry.reply.is_closed() {
            queue.pop_front();
            crate::metrics::dropped(1);
            continue;
        }
        let cost = entry.tokens();
        let full = tokens + cost > limits.max_tokens || batch.len() >= limits.max_units;
        if full && !batch.is_empty() {
            break;
        }
        tokens += cost;
        if let Some(entry) = queue.pop_front() {
            batch.push(entry);
        }
    }
    batch
}

/// Cuts units sorted by `(rows, length)` into sub-batches run as one padded forward pass each,
/// so that padding stays under `waste` of a sub-batch's real tokens: a batch then costs about
/// the sum of its sequences' costs, not its size times its longest sequence. Units with a
/// different number of rows (multiple choice) never share a sub-batch.
pub(crate) fn sub_batches(units: &[(usize, usize)], waste: f64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < units.len() {
        let (rows, _) = units[start];
        let mut real = 0usize;
        let mut stop = start;
        while let Some(&(r, len)) = units.get(stop) {
            let padded = (stop + 1 - start) * len;
            let fits = padded as f64 <= (real + len) as f64 * (1.0 + waste);
            if r != rows || (stop > start && !fits) {
                break;
            }
            real += len;
            stop += 1;
        }
        out.push(start..stop);
        start = stop;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> (Entry, oneshot::Receiver<UnitReply>) {
        Entry::new(vec![Feature {
            ids: vec![1; len],
            type_ids: vec![0; len],
        }])
    }

    #[test]
    fn batches_respect_the_budget_and_skip_closed_entries() {
        let mut queue = VecDeque::new();
        let mut keep = Vec::new();
        for (i, len) in [10, 20, 30, 40, 50].into_iter().enumerate() {
            let (e, rx) = entry(len);
            queue.push_back(e);
            if i != 1 {
                keep.push(rx); // entry 1's client went away
            }
        }
        let limits = BatchLimits {
            max_tokens: 85,
            max_units: 10,
        };
        let lens = |b: Vec<Entry>| b.iter().map(Entry::len).collect::<Vec<_>>();
        assert_eq!(lens(next_batch(&mut queue, limits)), vec![10, 30, 40]);
        assert_eq!(lens(next_batch(&mut queue, limits)), vec![50]);
        assert!(next_batch(&mut queue, limits).is_empty());
    }

    #[test]
    fn an_entry_over_the_budget_runs_alone_and_the_unit_cap_holds() {
        let mut queue = VecDeque::new();
        let mut rxs = Vec::new();
        for len in [100, 1, 1, 1] {
            let (e, rx) = entry(len);
            queue.push_back(e);
            rxs.push(rx);
        }
        let limits = BatchLimits {
            max_tokens: 50,
            max_units: 2,
        };
        assert_eq!(next_batch(&mut queue, limits).len(), 1);
        assert_eq!(next_batch(&mut queue, limits).len(), 2);
        assert_eq!(next_batch(&mut queue, limits).len(), 1);
    }

    #[test]
    fn sub_batches_bound_padding() {
        let units: Vec<(usize, usize)> = [8, 8, 9, 16, 17, 64, 200, 200]
            .iter()
            .map(|&l| (1, l))
            .collect();
        let cut = sub_batches(&units, 0.1);
        assert_eq!(cut, vec![0..3, 3..5, 5..6, 6..8]);
        for r in &cut {
            let real: usize = units[r.clone()].iter().map(|u| u.1).sum();
            let padded = r.len() * units[r.end - 1].1;
            assert!(padded as f64 <= real as f64 * 1.1);
        }
        let mixed = [(1, 5), (1, 5), (3, 5)];
        assert_eq!(sub_batches(&mixed, 1.0), vec![0..2, 2..3]);
    }
}
