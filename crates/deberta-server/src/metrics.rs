//! Prometheus metrics under TEI's names (`te_*`), recorded through the `metrics` facade and
//! rendered by `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `te_request_count` | counter | `method` (the route) |
//! | `te_request_success` | counter | `method` |
//! | `te_request_failure` | counter | `err` (`validation`, `overloaded`, ...) |
//! | `te_request_duration` | histogram (s) | |
//! | `te_request_tokenization_duration` | histogram (s) | |
//! | `te_request_queue_duration` | histogram (s) | |
//! | `te_request_inference_duration` | histogram (s) | |
//! | `te_request_input_length` | histogram (tokens per model unit) | |
//! | `te_queue_size` | gauge (units waiting) | |
//! | `te_batch_next_size` | histogram (units per batch) | |
//! | `te_batch_next_tokens` | histogram (tokens per batch) | |
//! | `te_batch_inference_duration` | histogram (s) | |
//! | `te_queue_dropped` | counter (units whose client went away, never computed) | |

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::infer::Timings;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
/// `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE.get_or_init(build).clone()
}

fn build() -> Option<PrometheusHandle> {
    let geometric = |start: f64, factor: f64, n: usize| -> Vec<f64> {
        std::iter::successors(Some(start), |v| Some(v * factor))
            .take(n)
            .collect()
    };
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration".into()),
            &geometric(0.000015, 1.5, 35),
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("te_request_input_length".into()),
                &geometric(1.0, 2.0, 20),
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("te_batch_next_size".into()),
                &geometric(1.0, 2.0, 13),
            )
        })
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("te_batch_next_tokens".into()),
                &geometric(1.0, 2.0, 21),
            )
        });
    let recorder = match builder {
        Ok(b) => b.build_recorder(),
        Err(e) => {
            tracing::warn!("metrics disabled: {e}");
            return None;
        }
    };
    let handle = recorder.handle();
    match ::metrics::set_global_recorder(recorder) {
        Ok(()) => Some(handle),
        Err(e) => {
            tracing::warn!("metrics disabled: {e}");
            None
        }
    }
}

/// A request arrived at `route`.
pub(crate) fn request(route: &'static str) {
    ::metrics::counter!("te_request_count", "method" => route).increment(1);
}

/// A request at `route` succeeded.
pub(crate) fn success(route: &'static str) {
    ::metrics::counter!("te_request_success", "method" => route).increment(1);
}

/// A request failed with `err`.
pub(crate) fn failure(err: &'static str) {
    ::metrics::counter!("te_request_failure", "err" => err).increment(1);
}

/// The durations of a successful inference request.
pub(crate) fn timings(t: &Timings) {
    ::metrics::histogram!("te_request_duration").record(t.start.elapsed().as_secs_f64());
    ::metrics::histogram!("te_request_tokenization_duration").record(t.tokenization.as_secs_f64());
    ::metrics::histogram!("te_request_queue_duration").record(t.queue.as_secs_f64());
    ::metrics::histogram!("te_request_inference_duration").record(t.inference.as_secs_f64());
}

/// The length of one model unit.
pub(crate) fn input_length(tokens: usize) {
    ::metrics::histogram!("te_request_input_length").record(tokens as f64);
}

/// Units waiting for the model.
pub(crate) fn queue_size(n: usize) {
    ::metrics::gauge!("te_queue_size").set(n as f64);
}

/// Units dropped from the queue because their client went away.
pub(crate) fn dropped(n: usize) {
    if n > 0 {
        ::metrics::counter!("te_queue_dropped").increment(n as u64);
    }
}

/// The batch about to run.
pub(crate) fn batch_next(units: usize, tokens: usize) {
    ::metrics::histogram!("te_batch_next_size").record(units as f64);
    ::metrics::histogram!("te_batch_next_tokens").record(tokens as f64);
}

/// How long a batch took.
pub(crate) fn batch_inference(d: Duration) {
    ::metrics::histogram!("te_batch_inference_duration").record(d.as_secs_f64());
}
