//! The queue's HTTP API: JSON for everything `plait` does to the queue from the shell.
//! Each store call blocks (SQLite, or a Redis round trip), so it runs on tokio's blocking
//! pool and never on a thread that polls coroutines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use plait_queue::{Cancel, NewTask, Payload, RetryPolicy, Store, TaskId, TaskInfo, WorkerInfo};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use crate::Stopping;

/// How long `GET /api/tasks/{id}/result?wait=` may hold a request.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(300);

/// An error as the API answers it: a status and `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<plait_queue::QueueError> for ApiError {
    fn from(error: plait_queue::QueueError) -> ApiError {
        use plait_queue::ErrorKind;
        let status = match error.kind() {
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unreachable | ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

/// A JSON body the API reads; what cannot be read is answered 400 (or 413, for one over
/// the limit) saying why, instead of axum's plain-text rejection.
pub(crate) struct Body<T>(T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Shared> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        board: &Shared,
    ) -> Result<Self, ApiError> {
        let within = board.body_timeout;
        let read = tokio::time::timeout(within, Json::<T>::from_request(request, board));
        let Ok(read) = read.await else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {within:?}: send it at once"),
            ));
        };
        match read {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match &rejection {
                JsonRejection::BytesRejection(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the body is over the limit of {} bytes", super::BODY_LIMIT),
                    )
                }
                _ => ApiError::new(
                    rejection.status(),
                    format!("the body: {}", rejection.body_text()),
                ),
            }),
        }
    }
}

type Answer = Result<Response, ApiError>;

/// Runs a store call off the coroutine threads.
async fn on_store<T: Send + 'static>(
    board: &Shared,
    call: impl FnOnce(&dyn Store) -> plait_queue::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let store: Arc<dyn Store> = board.store.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this dashboard shows no queue: start it with `plait serve` where plait.toml names one",
        )
    })?;
    tokio::task::spawn_blocking(move || call(store.as_ref()))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the store call panicked"))?
        .map_err(ApiError::from)
}

fn task_id(text: &str) -> Result<TaskId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad(format!(
            "{text:?} is not a task id: ids are whole numbers, as submit answers them"
        ))
    })
}

fn unknown(id: TaskId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no task {id} in the queue (it never existed, or its result expired)"),
    )
}

/// A duration as JSON gives it: a number of seconds, or text such as `"30s"` or `"1h30m"`.
fn duration(field: &str, value: &Value) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::bad(format!(
            "{field}: {value} is not a duration; give seconds (30) or text (\"30s\", \"5m\", \"1h30m\")"
        ))
    };
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(bad),
        Value::String(text) => humantime::parse_duration(text.trim()).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such path: see docs/web.md for the API",
    )
}

pub(crate) async fn queues(State(board): State<Shared>) -> Answer {
    let queues = on_store(&board, |s| s.queues()).await?;
    Ok(Json(queues).into_response())
}

/// A worker as the API shows it: the registry's record, its state and heartbeat age, and
/// the ids of the tasks it holds.
pub(crate) fn worker_json(
    worker: &WorkerInfo,
    now: plait_queue::Millis,
    running: &[TaskInfo],
) -> Value {
    let mut value = serde_json::to_value(worker).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("durations");
        fields.insert("state".into(), worker.state(now).as_str().into());
        fields.insert(
            "heartbeat_age_ms".into(),
            now.saturating_sub(worker.seen_at).into(),
        );
        let holds: Vec<Value> = running
            .iter()
            .filter(|t| t.worker.as_deref() == Some(&worker.name))
            .map(|t| json!({ "id": t.id, "runs": t.describe() }))
            .collect();
        fields.insert("current".into(), holds.into());
    }
    value
}

pub(crate) async fn workers(State(board): State<Shared>) -> Answer {
    let (workers, running, now) = on_store(&board, |s| {
        Ok((s.workers()?, s.running(None, 1000)?, s.now()))
    })
    .await?;
    let list: Vec<Value> = workers
        .iter()
        .map(|w| worker_json(w, now, &running))
        .collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
pub(crate) struct Listing {
    queue: Option<String>,
    limit: Option<usize>,
}

fn tasks_json(tasks: &[TaskInfo]) -> Response {
    Json(tasks.iter().map(TaskInfo::to_json).collect::<Vec<_>>()).into_response()
}

pub(crate) async fn running(State(board): State<Shared>, Query(at): Query<Listing>) -> Answer {
    let limit = at.limit.unwrap_or(100).min(1000);
    let tasks = on_store(&board, move |s| s.running(at.queue.as_deref(), limit)).await?;
    Ok(tasks_json(&tasks))
}

pub(crate) async fn retrying(State(board): State<Shared>, Query(at): Query<Listing>) -> Answer {
    let limit = at.limit.unwrap_or(100).min(1000);
    let tasks = on_store(&board, move |s| s.retrying(at.queue.as_deref(), limit)).await?;
    Ok(tasks_json(&tasks))
}

pub(crate) async fn dead(State(board): State<Shared>, Query(at): Query<Listing>) -> Answer {
    let limit = at.limit.unwrap_or(100).min(1000);
    let tasks = on_store(&board, move |s| s.dead(at.queue.as_deref(), limit)).await?;
    Ok(tasks_json(&tasks))
}

/// `POST /api/tasks`: a command, as `plait submit` sends one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCommand {
    command: Vec<String>,
    queue: Option<String>,
    #[serde(default)]
    priority: i32,
    countdown: Option<Value>,
    /// Seconds since the Unix epoch.
    eta: Option<u64>,
    key: Option<String>,
    retries: Option<u32>,
    crash_budget: Option<u32>,
    time_limit: Option<Value>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<std::path::PathBuf>,
}

pub(crate) async fn submit(State(board): State<Shared>, Body(new): Body<NewCommand>) -> Answer {
    if new.command.first().is_none_or(String::is_empty) {
        return Err(ApiError::bad(
            "command: give the program and its arguments, as [\"echo\", \"hi\"]",
        ));
    }
    let payload = Payload::Command {
        argv: new.command,
        env: new.env,
        cwd: new.cwd,
    };
    let mut task = NewTask::new(payload.encode())
        .queue(new.queue.unwrap_or_else(|| board.default_queue.clone()))
        .priority(new.priority);
    if let Some(countdown) = &new.countdown {
        task = task.countdown(duration("countdown", countdown)?);
    }
    if let Some(eta) = new.eta {
        task = task.eta(UNIX_EPOCH + Duration::from_secs(eta));
    }
    if let Some(key) = new.key {
        task = task.key(key);
    }
    if new.retries.is_some() || new.crash_budget.is_some() {
        let default = RetryPolicy::default();
        task = task.retry(RetryPolicy {
            max_retries: new.retries.unwrap_or(default.max_retries),
            crash_budget: new.crash_budget.unwrap_or(default.crash_budget),
            ..default
        });
    }
    if let Some(limit) = &new.time_limit {
        task = task.time_limit(duration("time_limit", limit)?);
    }
    let done = on_store(&board, move |s| s.enqueue(&task)).await?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "id": done.id, "created": done.created })),
    )
        .into_response())
}

pub(crate) async fn status(State(board): State<Shared>, Path(id): Path<String>) -> Answer {
    let id = task_id(&id)?;
    let task = on_store(&board, move |s| s.get(id))
        .await?
        .ok_or_else(|| unknown(id))?;
    Ok(Json(task.to_json()).into_response())
}

#[derive(Deserialize)]
pub(crate) struct Wait {
    wait: Option<String>,
}

/// `GET /api/tasks/{id}/result?wait=30s`: the task once it has finished (200), or as it
/// stands when the wait runs out (202): a long poll, woken by the store, not by polling.
/// The wait is taken in steps, so that a server that stops answers at its next step.
pub(crate) async fn result(
    State(board): State<Shared>,
    Path(id): Path<String>,
    Query(wait): Query<Wait>,
    stopping: Option<Extension<Stopping>>,
) -> Answer {
    const STEP: Duration = Duration::from_secs(1);
    let id = task_id(&id)?;
    let wait = match &wait.wait {
        Some(text) => duration("wait", &Value::String(text.clone()))?.min(LONGEST_WAIT),
        None => Duration::ZERO,
    };
    let stopping = stopping.map(|Extension(stopping)| stopping);
    let task = on_store(&board, move |s| {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let stop = stopping.as_ref().is_some_and(Stopping::is_stopping);
            if left.is_zero() || stop {
                return s.get(id);
            }
            match s.wait_finished(id, left.min(STEP)) {
                Ok(task) if task.state.is_finished() => return Ok(Some(task)),
                Ok(_) => {}
                Err(error) if error.kind() == plait_queue::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    })
    .await?
    .ok_or_else(|| unknown(id))?;
    let status = if task.state.is_finished() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(task.to_json())).into_response())
}

pub(crate) async fn cancel(State(board): State<Shared>, Path(id): Path<String>) -> Answer {
    let id = task_id(&id)?;
    // The store says NotFound for an id it does not hold: one call, not a look first.
    let cancelled = on_store(&board, move |s| match s.cancel(id) {
        Ok(cancel) => Ok(Some(cancel)),
        Err(error) if error.kind() == plait_queue::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    })
    .await?
    .ok_or_else(|| unknown(id))?;
    let answer = match cancelled {
        Cancel::Cancelled => json!({ "id": id, "outcome": "cancelled" }),
        Cancel::Requested => json!({ "id": id, "outcome": "requested" }),
        Cancel::AlreadyFinished(state) => {
            json!({ "id": id, "outcome": "already_finished", "state": state })
        }
    };
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Requeue {
    ids: Option<Vec<TaskId>>,
    #[serde(default)]
    all: bool,
}

pub(crate) async fn requeue(State(board): State<Shared>, Body(which): Body<Requeue>) -> Answer {
    let ids = match (which.ids, which.all) {
        (Some(_), true) => return Err(ApiError::bad("give ids or all: true, not both")),
        (None, false) => {
            return Err(ApiError::bad(
                "give the dead tasks' ids ({\"ids\": [7]}) or {\"all\": true}",
            ));
        }
        (ids, _) => ids,
    };
    let requeued = on_store(&board, move |s| s.requeue_dead(ids.as_deref())).await?;
    Ok(Json(json!({ "requeued": requeued })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Purge {
    queue: Option<String>,
}

pub(crate) async fn purge(State(board): State<Shared>, Body(which): Body<Purge>) -> Answer {
    let purged = on_store(&board, move |s| s.purge(which.queue.as_deref())).await?;
    Ok(Json(json!({ "purged": purged })).into_response())
}

pub(crate) async fn run(State(board): State<Shared>) -> Answer {
    let run = board.run.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this dashboard shows no run: start one with `plait run JOB --serve`",
        )
    })?;
    Ok(Json(run.snapshot()).into_response())
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
