//! The live view: one poller per dashboard looks at the queue and the run, and every page
//! listening gets a new snapshot (server-sent events) when anything in it changed. The
//! poller runs only while a page listens.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Shared;
use super::api::{ApiError, now_ms, worker_json};
use crate::Stopping;

/// How many of each list a snapshot carries: a page, not an export.
const RUNNING_SHOWN: usize = 100;
const RETRYING_SHOWN: usize = 50;
const DEAD_SHOWN: usize = 100;
/// The window over which a queue's rate is taken.
const RATE_WINDOW: Duration = Duration::from_secs(10);

pub(crate) struct Live {
    every: Duration,
    latest: watch::Sender<Arc<str>>,
    /// Whether the poller runs; taken together with subscribing, so that a page that
    /// arrives as the poller stops starts a new one.
    polling: Mutex<bool>,
}

impl Live {
    pub(crate) fn new(every: Duration) -> Live {
        Live {
            every,
            latest: watch::Sender::new(Arc::from("")),
            polling: Mutex::new(false),
        }
    }
}

/// `GET /api/events`: a snapshot at once, then one each time something changed.
pub(crate) async fn events(
    State(board): State<Shared>,
    stopping: Option<Extension<Stopping>>,
) -> impl IntoResponse {
    let receiver = {
        let mut polling = board
            .live
            .polling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let receiver = board.live.latest.subscribe();
        if !*polling {
            *polling = true;
            tokio::spawn(poll(board.clone()));
        }
        receiver
    };
    let stopping = stopping.map(|Extension(stopping)| stopping);
    Sse::new(snapshots(board, receiver, stopping)).keep_alive(KeepAlive::default())
}

/// The snapshots as events, until the server stops (a stream that never ended would hold
/// up its stop); then one last snapshot taken there and then, so that a page keeps the
/// final state of what it showed (a run that just ended).
fn snapshots(
    board: Shared,
    receiver: watch::Receiver<Arc<str>>,
    stopping: Option<Stopping>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = Some((board, receiver, stopping, true));
    futures_util::stream::unfold(state, |state| async move {
        let (board, mut receiver, stopping, first) = state?;
        loop {
            if !first || receiver.borrow().is_empty() {
                let stopped = async {
                    match &stopping {
                        Some(stopping) => stopping.stopped().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = receiver.changed() => changed.ok()?,
                    () = stopped => {
                        let last = with_time(take(&board, &mut Rates::default()).await);
                        let event = Event::default().event("snapshot").data(last.to_string());
                        return Some((Ok(event), None));
                    }
                }
            }
            let data = receiver.borrow_and_update().clone();
            if !data.is_empty() {
                let event = Event::default().event("snapshot").data(&*data);
                return Some((Ok(event), Some((board, receiver, stopping, false))));
            }
        }
    })
}

/// `GET /api/snapshot`: what a page would be sent now.
pub(crate) async fn snapshot(State(board): State<Shared>) -> Result<Json<Value>, ApiError> {
    let mut rates = Rates::default();
    let body = take(&board, &mut rates).await;
    Ok(Json(with_time(body)))
}

/// Looks every `every` while anyone listens; publishes a snapshot when it differs from
/// the last one (the time it was taken aside).
async fn poll(board: Shared) {
    let mut rates = Rates::default();
    let mut last = Value::Null;
    loop {
        let body = take(&board, &mut rates).await;
        let compared = without_clocks(&body);
        if compared != last {
            last = compared;
            board
                .live
                .latest
                .send_replace(Arc::from(with_time(body).to_string()));
        }
        // A run's change is shown at once; the queue's at the next look.
        let run_changed = async {
            match &board.run {
                Some(run) => run.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(board.live.every) => {}
            () = run_changed => {}
        }
        let mut polling = board
            .live
            .polling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if board.live.latest.receiver_count() == 0 {
            *polling = false;
            return;
        }
    }
}

/// The snapshot without what changes at every look (the store's clock, the run's
/// elapsed time), to tell whether anything else did.
fn without_clocks(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(queue) = body.get_mut("queue").and_then(Value::as_object_mut) {
        queue.remove("store_now");
    }
    if let Some(run) = body.get_mut("run").and_then(Value::as_object_mut) {
        run.remove("elapsed_ms");
    }
    body
}

fn with_time(mut body: Value) -> Value {
    if let Some(fields) = body.as_object_mut() {
        fields.insert("at_ms".into(), now_ms().into());
    }
    body
}

/// Finished tasks per queue, sampled over the last [`RATE_WINDOW`].
#[derive(Default)]
struct Rates {
    samples: VecDeque<(Instant, HashMap<String, u64>)>,
}

impl Rates {
    /// Adds a sample; returns each queue's tasks finished per second over the window.
    fn sample(&mut self, finished: HashMap<String, u64>) -> HashMap<String, f64> {
        let now = Instant::now();
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let rates = match self.samples.front() {
            Some((at, then)) if now.duration_since(*at) >= Duration::from_millis(100) => {
                let seconds = now.duration_since(*at).as_secs_f64();
                finished
                    .iter()
                    .map(|(queue, n)| {
                        let before = then.get(queue).copied().unwrap_or(0);
                        // Counts fall as results expire: that is no negative rate.
                        (queue.clone(), n.saturating_sub(before) as f64 / seconds)
                    })
                    .collect()
            }
            _ => HashMap::new(),
        };
        self.samples.push_back((now, finished));
        rates
    }
}

/// The snapshot, without its time: the queue's (if any) and the run's (if any).
async fn take(board: &Shared, rates: &mut Rates) -> Value {
    let queue = match &board.store {
        None => Value::Null,
        Some(store) => {
            let store = store.clone();
            let looked = tokio::task::spawn_blocking(move || -> plait_queue::Result<_> {
                Ok((
                    store.queues()?,
                    store.workers()?,
                    store.running(None, RUNNING_SHOWN)?,
                    store.retrying(None, RETRYING_SHOWN)?,
                    store.dead(None, DEAD_SHOWN)?,
                    store.now(),
                ))
            })
            .await;
            match looked {
                Ok(Ok(looked)) => queue_json(looked, rates),
                Ok(Err(error)) => json!({ "error": error.to_string() }),
                Err(_) => json!({ "error": "the store call panicked" }),
            }
        }
    };
    let run = board
        .run
        .as_ref()
        .map_or(Value::Null, super::RunBoard::snapshot);
    json!({ "queue": queue, "run": run })
}

type Looked = (
    Vec<plait_queue::QueueStats>,
    Vec<plait_queue::WorkerInfo>,
    Vec<plait_queue::TaskInfo>,
    Vec<plait_queue::TaskInfo>,
    Vec<plait_queue::TaskInfo>,
    plait_queue::Millis,
);

fn queue_json((queues, workers, running, retrying, dead, now): Looked, rates: &mut Rates) -> Value {
    let finished = queues
        .iter()
        .map(|q| (q.queue.clone(), q.succeeded + q.dead + q.cancelled))
        .collect();
    let rates = rates.sample(finished);
    let queues: Vec<Value> = queues
        .iter()
        .map(|q| {
            let mut value = serde_json::to_value(q).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                let rate = rates.get(&q.queue).copied().unwrap_or(0.0);
                fields.insert("rate".into(), ((rate * 10.0).round() / 10.0).into());
            }
            value
        })
        .collect();
    let brief = |t: &plait_queue::TaskInfo| {
        json!({
            "id": t.id,
            "queue": t.queue,
            "state": t.state,
            "runs": t.describe(),
            "worker": t.worker,
            "attempts": t.attempts,
            "started_at": t.started_at,
            "ready_at": t.ready_at,
            "error": t.error.as_ref().map(ToString::to_string),
            "reason": t.reason,
        })
    };
    let workers: Vec<Value> = workers
        .iter()
        .map(|w| {
            let mut value = worker_json(w, now, &running);
            // Recomputed by the page from `seen_at`: an age here would change every look.
            if let Some(fields) = value.as_object_mut() {
                fields.remove("heartbeat_age_ms");
            }
            value
        })
        .collect();
    json!({
        "store_now": now,
        "queues": queues,
        "workers": workers,
        "running": running.iter().map(brief).collect::<Vec<_>>(),
        "retrying": retrying.iter().map(brief).collect::<Vec<_>>(),
        "dead": dead.iter().map(brief).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_taken_over_the_window_and_never_negative() {
        let mut rates = Rates::default();
        let at = |n: u64| HashMap::from([("q".to_owned(), n)]);
        assert!(rates.sample(at(10)).is_empty(), "one sample: no rate yet");
        // Samples a known time apart, set by hand rather than slept for.
        let first = rates.samples.front_mut().unwrap();
        first.0 -= Duration::from_secs(2);
        let rate = rates.sample(at(30))["q"];
        assert!((9.0..=10.1).contains(&rate), "20 over 2 s: {rate}");
        // Results expired: the count fell, which is no negative rate.
        assert_eq!(rates.sample(at(5))["q"], 0.0);
        // Outside the window the old sample no longer counts.
        for sample in &mut rates.samples {
            sample.0 -= RATE_WINDOW;
        }
        assert!(rates.sample(at(5)).is_empty());
    }
}
