//! The model thread: warms the model up, then takes batches from the queue and runs them until
//! every sender is gone. On the fused CPU path a batch is one unpadded forward pass (each
//! sequence at its own length: the batch costs the sum of its sequences' costs); elsewhere it
//! is sorted by length and cut into padded sub-batches of similar length.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deberta_tasks::{Engine, Feature, UnitOutput};

use crate::error::ApiError;
use crate::metrics;
use crate::queue::{next_batch, sub_batches, BatchLimits, Entry, Job, UnitReply};

/// Most padding a sub-batch may carry, as a share of its real tokens.
const PADDING_WASTE: f64 = 0.15;

/// Whether the model is loaded and warmed up, and its thread alive.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// True once the warm-up forward pass succeeded, until the model thread stops.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// Starts the model thread. It ends on [`Job::Stop`] (after the units queued before it) or
/// when every sender of `rx` has been dropped.
pub(crate) fn spawn(
    engine: Engine,
    rx: Receiver<Job>,
    limits: BatchLimits,
    health: Arc<Health>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("deberta-model".into())
        .spawn(move || {
            match warm_up(&engine) {
                Ok(took) => {
                    tracing::info!(?took, "model warmed up; ready");
                    health.set(true);
                }
                Err(e) => tracing::error!("warm-up forward pass failed: {e}"),
            }
            run(&engine, &rx, limits);
            health.set(false);
            tracing::info!("model thread stopped");
        })
}

/// One forward pass on a short text, so `/health` turns 200 only when the model runs.
fn warm_up(engine: &Engine) -> Result<Duration, ApiError> {
    let start = Instant::now();
    let enc = engine
        .tokenizer()
        .encode("warm up", None, &Default::default())?;
    let unit = vec![Feature::from(&enc)];
    forward(engine, &[unit.as_slice()])?;
    Ok(start.elapsed())
}

fn run(engine: &Engine, rx: &Receiver<Job>, limits: BatchLimits) {
    let mut queue: VecDeque<Entry> = VecDeque::new();
    let mut stopping = false;
    loop {
        if queue.is_empty() {
            if stopping {
                return;
            }
            match rx.recv() {
                Ok(Job::Unit(entry)) => queue.push_back(entry),
                Ok(Job::Stop) | Err(_) => stopping = true,
            }
        }
        while !stopping {
            match rx.try_recv() {
                Ok(Job::Unit(entry)) => queue.push_back(entry),
                Err(TryRecvError::Empty) => break,
                Ok(Job::Stop) | Err(TryRecvError::Disconnected) => stopping = true,
            }
        }
        metrics::queue_size(queue.len());
        let batch = next_batch(&mut queue, limits);
        metrics::queue_size(queue.len());
        if !batch.is_empty() {
            run_batch(engine, batch);
        }
    }
}

/// Runs one batch and replies to each entry: one unpadded forward pass where the engine runs
/// them, else sorted by (rows, length) and cut into padded sub-batches of similar length, each
/// one forward pass.
fn run_batch(engine: &Engine, mut batch: Vec<Entry>) {
    let started = Instant::now();
    batch.sort_by_key(|e| (e.features.len(), e.len()));
    let shape: Vec<(usize, usize)> = batch.iter().map(|e| (e.features.len(), e.len())).collect();
    metrics::batch_next(batch.len(), batch.iter().map(Entry::tokens).sum());
    let groups: Vec<std::ops::Range<usize>> = if engine.runs_unpadded() {
        std::iter::once(0..batch.len()).collect()
    } else {
        sub_batches(&shape, PADDING_WASTE)
    };
    let mut entries = batch.into_iter();
    for range in groups {
        let group: Vec<Entry> = entries.by_ref().take(range.len()).collect();
        run_group(engine, group, started);
    }
    metrics::batch_inference(started.elapsed());
}

fn run_group(engine: &Engine, group: Vec<Entry>, batch_start: Instant) {
    let n = group.len();
    let group: Vec<Entry> = group.into_iter().filter(|e| !e.reply.is_closed()).collect();
    metrics::dropped(n - group.len());
    if group.is_empty() {
        return;
    }
    let start = Instant::now();
    let units: Vec<&[Feature]> = group.iter().map(|e| e.features.as_slice()).collect();
    let result = forward(engine, &units);
    let inference = start.elapsed();
    match result {
        Ok(outputs) if outputs.len() == group.len() => {
            for (entry, output) in group.into_iter().zip(outputs) {
                reply(entry, Ok(output), batch_start, inference);
            }
        }
        Ok(_) | Err(_) if group.len() > 1 => {
            // Find the unit at fault: the others still get their answers.
            for entry in group {
                run_group(engine, vec![entry], batch_start);
            }
        }
        Ok(_) => {
            let error = ApiError::backend("the model returned no output");
            reply_all(group, error, batch_start, inference)
        }
        Err(e) => reply_all(group, e, batch_start, inference),
    }
}

/// `Engine::run`, with a panic of the model turned into an error.
fn forward(engine: &Engine, units: &[&[Feature]]) -> Result<Vec<UnitOutput>, ApiError> {
    match catch_unwind(AssertUnwindSafe(|| engine.run(units))) {
        Ok(result) => result.map_err(|e| ApiError::backend(format!("inference failed: {e}"))),
        Err(_) => Err(ApiError::backend("inference failed: the model panicked")),
    }
}

fn reply(
    entry: Entry,
    result: Result<UnitOutput, ApiError>,
    batch_start: Instant,
    inference: Duration,
) {
    let queue = batch_start.saturating_duration_since(entry.queued);
    // The client may have gone away meanwhile; nothing to do then.
    let _ = entry.reply.send(UnitReply {
        result,
        queue,
        inference,
    });
}

fn reply_all(group: Vec<Entry>, error: ApiError, batch_start: Instant, inference: Duration) {
    for entry in group {
        reply(entry, Err(error.clone()), batch_start, inference);
    }
}
