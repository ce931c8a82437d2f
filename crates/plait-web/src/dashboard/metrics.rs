//! `/metrics`: the queue, its workers, the run and the runtime's strands in Prometheus's
//! text exposition format, written by `prometheus-client`. Each scrape reads the store
//! afresh; nothing is kept between scrapes but what the store keeps.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use plait_queue::{Durations, QueueStats, WorkerInfo, WorkerState};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Shared;
use super::api::ApiError;

type Labels = Vec<(&'static str, String)>;

/// The workers' histograms of attempt durations added up: kept by the workers, in
/// buckets fixed by [`Durations::BOUNDS_MS`], so the scrape only encodes them.
#[derive(Debug)]
struct DurationHistogram(Durations);

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut buckets: Vec<(f64, u64)> = Durations::BOUNDS_MS
            .iter()
            .map(|&ms| (ms as f64 / 1000.0, 0))
            .chain([(f64::INFINITY, 0)])
            .collect();
        for (bucket, count) in buckets.iter_mut().zip(&self.0.counts) {
            bucket.1 = *count;
        }
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_ms as f64 / 1000.0,
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

pub(crate) async fn metrics(State(board): State<Shared>) -> Result<Response, ApiError> {
    let mut registry = Registry::with_prefix("plait");
    if let Some(store) = board.store.clone() {
        let (queues, workers, now) =
            tokio::task::spawn_blocking(move || -> plait_queue::Result<_> {
                Ok((store.queues()?, store.workers()?, store.now()))
            })
            .await
            .map_err(|_| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the store call panicked")
            })??;
        queue_metrics(&mut registry, &queues);
        worker_metrics(&mut registry, &workers, now);
    }
    if let Some(run) = &board.run {
        let tasks = Family::<Labels, Gauge>::default();
        for (state, n) in run.counts() {
            let state = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            tasks
                .get_or_create(&vec![("state", state.unwrap_or_default())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        registry.register(
            "run_tasks",
            "Tasks of the run this dashboard shows, by state",
            tasks,
        );
    }
    if let Some(rt) = &board.runtime {
        runtime_metrics(&mut registry, &rt.metrics());
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be written",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn gauge(n: impl TryInto<i64>) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(n.try_into().unwrap_or(i64::MAX));
    gauge
}

fn queue_metrics(registry: &mut Registry, queues: &[QueueStats]) {
    let tasks = Family::<Labels, Gauge>::default();
    for q in queues {
        for (state, n) in [
            ("ready", q.ready),
            ("scheduled", q.scheduled),
            ("running", q.running),
            ("succeeded", q.succeeded),
            ("dead", q.dead),
            ("cancelled", q.cancelled),
        ] {
            let labels = vec![("queue", q.queue.clone()), ("state", state.to_owned())];
            tasks
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    registry.register(
        "queue_tasks",
        "Tasks by queue and state (succeeded, dead and cancelled: those whose results are kept)",
        tasks,
    );
}

fn worker_metrics(registry: &mut Registry, workers: &[WorkerInfo], now: plait_queue::Millis) {
    let by_state = Family::<Labels, Gauge>::default();
    for state in [WorkerState::Active, WorkerState::Lost, WorkerState::Stopped] {
        let n = workers.iter().filter(|w| w.state(now) == state).count();
        by_state
            .get_or_create(&vec![("state", state.as_str().to_owned())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register("workers", "Workers the registry holds, by state", by_state);
    let active: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| w.state(now) == WorkerState::Active)
        .collect();
    registry.register(
        "worker_slots",
        "Attempts the active workers may run at once, in all",
        gauge(active.iter().map(|w| u64::from(w.concurrency)).sum::<u64>()),
    );
    registry.register(
        "worker_busy_slots",
        "Attempts the active workers are running",
        gauge(active.iter().map(|w| u64::from(w.running)).sum::<u64>()),
    );
    let attempts = Family::<Labels, Counter>::default();
    attempts
        .get_or_create(&vec![("outcome", "succeeded".to_owned())])
        .inc_by(workers.iter().map(|w| w.succeeded).sum());
    attempts
        .get_or_create(&vec![("outcome", "failed".to_owned())])
        .inc_by(workers.iter().map(|w| w.failed).sum());
    registry.register(
        "worker_attempts",
        "Attempts finished by the workers the registry holds",
        attempts,
    );
    let mut durations = Durations::default();
    for worker in workers {
        durations.add(&worker.durations);
    }
    registry.register_with_unit(
        "task_duration",
        "How long attempts took, from start to end on their worker",
        prometheus_client::registry::Unit::Seconds,
        DurationHistogram(durations),
    );
}

fn runtime_metrics(registry: &mut Registry, metrics: &plait::RuntimeMetrics) {
    let in_flight = Family::<Labels, Gauge>::default();
    let workers = Family::<Labels, Gauge>::default();
    for (strand, load) in [
        ("thread", &metrics.thread),
        ("coroutine", &metrics.coroutine),
        ("process", &metrics.process),
    ] {
        let labels = vec![("strand", strand.to_owned())];
        in_flight
            .get_or_create(&labels)
            .set(i64::try_from(load.in_flight).unwrap_or(i64::MAX));
        workers
            .get_or_create(&labels)
            .set(i64::try_from(load.workers).unwrap_or(i64::MAX));
    }
    registry.register(
        "runtime_in_flight",
        "Tasks admitted and not yet finished on this process's runtime, by strand",
        in_flight,
    );
    registry.register(
        "runtime_workers",
        "Workers of this process's runtime, by strand",
        workers,
    );
    registry.register(
        "runtime_spare_threads",
        "Spare threads running in the place of blocked pool threads",
        gauge(metrics.spare_threads),
    );
}
