//! One client request through a task pipeline: a concurrency permit, tokenization on the
//! blocking pool (in chunks of `max_client_batch_size`), every model unit queued for the model
//! thread, then the pipeline's post-processing. Dropping the future (the client went away)
//! closes the units' reply channels, and the batcher skips them.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deberta_tasks::{Feature, Staged, UnitOutput};
use deberta_tokenizer::Side;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::{ApiError, ErrorType};
use crate::metrics;
use crate::model::{Model, Policy};
use crate::queue::{Entry, Job};

/// Picks the pipeline of a route for a truncation policy (or the 422 naming the head it needs).
pub(crate) type Pick<S> = fn(&Model, Policy) -> Result<&S, ApiError>;

/// Where the time of a request went, for the `x-*-time` headers and the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// When the request started.
    pub start: Instant,
    /// Tokenization.
    pub tokenization: Duration,
    /// The longest wait of a unit for its batch.
    pub queue: Duration,
    /// The longest forward pass a unit was part of.
    pub inference: Duration,
    /// Tokens computed (units padded to their own longest row).
    pub tokens: usize,
}

impl Timings {
    fn new(start: Instant) -> Self {
        Timings {
            start,
            tokenization: Duration::ZERO,
            queue: Duration::ZERO,
            inference: Duration::ZERO,
            tokens: 0,
        }
    }
}

/// The request-side half of the batcher: the queue sender and the concurrency permits.
pub(crate) struct Infer {
    queue: Sender<Job>,
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    max_client_batch_size: usize,
    auto_split: bool,
}

/// A request's options and how to truncate.
pub(crate) struct Call<S: Staged> {
    pub inputs: Vec<S::Input>,
    pub options: S::Options,
    /// `None`: refuse inputs over the maximum length.
    pub truncate: Option<Side>,
}

/// A pipeline the server runs: it and its values cross to the blocking pool and the batcher's
/// thread.
pub(crate) trait Served:
    Staged<
        Input: Send + 'static,
        Options: Send + Sync + 'static,
        Prepared: Send + 'static,
        Output: Send + 'static,
    > + Send
    + Sync
    + 'static
{
}

impl<S> Served for S where
    S: Staged<
            Input: Send + 'static,
            Options: Send + Sync + 'static,
            Prepared: Send + 'static,
            Output: Send + 'static,
        > + Send
        + Sync
        + 'static
{
}

impl Infer {
    pub(crate) fn new(queue: Sender<Job>, config: &crate::ServerConfig) -> Self {
        Infer {
            queue,
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            queue_timeout: config.queue_timeout,
            max_client_batch_size: config.max_client_batch_size,
            auto_split: config.auto_split,
        }
    }

    /// Tells the model thread to stop once the units queued so far are done.
    pub(crate) fn stop(&self) {
        let _ = self.queue.send(Job::Stop);
    }

    /// One permit per client request: at once if free, else after waiting up to the queue
    /// timeout; then 429.
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let overloaded = || ApiError::overloaded("Model is overloaded");
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => return Ok(p),
            Err(TryAcquireError::Closed) => return Err(overloaded()),
            Err(TryAcquireError::NoPermits) if self.queue_timeout.is_zero() => {
                return Err(overloaded())
            }
            Err(TryAcquireError::NoPermits) => {}
        }
        match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(overloaded()),
        }
    }

    /// Refuses a client batch over `max_client_batch_size` (413) unless auto-split is on.
    pub(crate) fn check_batch(&self, what: &str, n: usize) -> Result<(), ApiError> {
        if n > self.max_client_batch_size && !self.auto_split {
            return Err(ApiError::new(
                ErrorType::PayloadTooLarge,
                format!(
                    "batch size {n} > maximum allowed batch size {} (`{what}`; \
                     see --max-client-batch-size, --auto-split)",
                    self.max_client_batch_size
                ),
            ));
        }
        Ok(())
    }

    /// Runs a call through the pipeline `pick` selects: one output per input, in order.
    pub(crate) async fn run<S: Served>(
        &self,
        model: &Arc<Model>,
        pick: Pick<S>,
        call: Call<S>,
    ) -> Result<(Vec<S::Output>, Timings), ApiError> {
        let mut timings = Timings::new(Instant::now());
        pick(model, Policy::Strict)?; // the head's 422 before anything else
        let _permit = self.acquire().await?;
        let options = Arc::new(call.options);
        let tokenize_start = Instant::now();
        let (prepared, policy) = self
            .tokenize(model, pick, call.inputs, &options, call.truncate)
            .await?;
        timings.tokenization = tokenize_start.elapsed();
        let outputs = self.compute::<S>(&prepared, &mut timings).await?;
        let model = model.clone();
        let answers = blocking(move || {
            let pipeline = pick(&model, policy)?;
            prepared
                .iter()
                .zip(outputs)
                .map(|(p, out)| Ok(pipeline.finish(p, &out, &options)?))
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await?;
        Ok((answers, timings))
    }

    /// Tokenizes in chunks of `max_client_batch_size`, each on the blocking pool.
    async fn tokenize<S: Served>(
        &self,
        model: &Arc<Model>,
        pick: Pick<S>,
        inputs: Vec<S::Input>,
        options: &Arc<S::Options>,
        truncate: Option<Side>,
    ) -> Result<(Vec<S::Prepared>, Policy), ApiError> {
        let chunk = self.max_client_batch_size.max(1);
        let mut inputs = inputs.into_iter();
        let mut tasks = Vec::new();
        loop {
            let part: Vec<S::Input> = inputs.by_ref().take(chunk).collect();
            if part.is_empty() {
                break;
            }
            let (model, options) = (model.clone(), options.clone());
            tasks.push(blocking(move || {
                prepare_chunk(&model, pick, &part, &options, truncate)
            }));
        }
        let mut prepared = Vec::new();
        let mut policy = Policy::Strict;
        for task in tasks {
            let (part, p) = task.await?;
            prepared.extend(part);
            if p != Policy::Strict {
                policy = p;
            }
        }
        Ok((prepared, policy))
    }

    /// Queues every unit of every prepared input and waits for their outputs; one list of
    /// unit outputs per input.
    async fn compute<S: Staged>(
        &self,
        prepared: &[S::Prepared],
        timings: &mut Timings,
    ) -> Result<Vec<Vec<UnitOutput>>, ApiError> {
        let mut receivers = Vec::with_capacity(prepared.len());
        for p in prepared {
            let mut mine = Vec::new();
            for unit in S::units(p) {
                let (entry, rx) = Entry::new(unit);
                metrics::input_length(entry.tokens());
                timings.tokens += entry.tokens();
                self.queue.send(Job::Unit(entry)).map_err(|_| {
                    ApiError::new(ErrorType::Unhealthy, "the model thread has stopped")
                })?;
                mine.push(rx);
            }
            receivers.push(mine);
        }
        let mut outputs = Vec::with_capacity(receivers.len());
        for mine in receivers {
            let mut outs = Vec::with_capacity(mine.len());
            for rx in mine {
                let reply = rx
                    .await
                    .map_err(|_| ApiError::backend("the model thread dropped the request"))?;
                timings.queue = timings.queue.max(reply.queue);
                timings.inference = timings.inference.max(reply.inference);
                outs.push(reply.result?);
            }
            outputs.push(outs);
        }
        Ok(outputs)
    }
}

/// Prepares one chunk: in full first; inputs over the maximum length are refused, or, when the
/// request allows truncation, the chunk is prepared again truncated.
fn prepare_chunk<S: Staged>(
    model: &Model,
    pick: Pick<S>,
    inputs: &[S::Input],
    options: &S::Options,
    truncate: Option<Side>,
) -> Result<(Vec<S::Prepared>, Policy), ApiError> {
    let max = model.max_input_length();
    let prepared = collect(pick(model, Policy::Strict)?.prepare(inputs, options))?;
    let Some(longest) = longest_over::<S>(&prepared, max) else {
        return Ok((prepared, Policy::Strict));
    };
    let Some(side) = truncate else {
        return Err(too_long(max, longest));
    };
    let policy = Policy::Truncate(side);
    let prepared = collect(pick(model, policy)?.prepare(inputs, options))?;
    match longest_over::<S>(&prepared, max) {
        Some(longest) => Err(too_long(max, longest)),
        None => Ok((prepared, policy)),
    }
}

fn too_long(max: usize, given: usize) -> ApiError {
    ApiError::validation(format!(
        "`inputs` must have at most {max} tokens. Given: {given} \
         (send `truncate: true`, or start the server with --auto-truncate)"
    ))
}

/// The longest row of any unit, when it is over `max`.
fn longest_over<S: Staged>(prepared: &[S::Prepared], max: usize) -> Option<usize> {
    prepared
        .iter()
        .flat_map(|p| S::units(p))
        .flat_map(|u| u.into_iter().map(|f: Feature| f.ids.len()))
        .max()
        .filter(|&n| n > max)
}

fn collect<P>(results: Vec<deberta_tasks::Result<P>>) -> Result<Vec<P>, ApiError> {
    results
        .into_iter()
        .map(|r| r.map_err(ApiError::from))
        .collect()
}

/// Runs `f` on the blocking pool; a panic in it becomes a 500.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(ApiError::new(
            ErrorType::Internal,
            format!("a worker failed: {e}"),
        )),
    }
}
