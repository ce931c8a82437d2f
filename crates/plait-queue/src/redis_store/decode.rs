//! Reading the Redis store's records back: a task's hash as a [`TaskInfo`], a worker's
//! JSON as a [`WorkerInfo`].

use std::collections::HashMap;

use crate::failure::{Failure, FailureKind};
use crate::task::{State, TaskId, TaskInfo};

/// A task's hash, field by field.
pub(super) type Fields = HashMap<String, Vec<u8>>;

pub(super) fn state(text: &str) -> State {
    match text {
        "queued" => State::Queued,
        "running" => State::Running,
        "succeeded" => State::Succeeded,
        "dead" => State::Dead,
        _ => State::Cancelled,
    }
}

fn text(fields: &Fields, name: &str) -> Option<String> {
    fields
        .get(name)
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

fn number<N: std::str::FromStr>(fields: &Fields, name: &str) -> Option<N> {
    text(fields, name).and_then(|t| t.parse().ok())
}

/// The task in `fields` (empty: the task is gone).
pub(super) fn task_info(id: TaskId, mut fields: Fields) -> Option<TaskInfo> {
    if fields.is_empty() {
        return None;
    }
    let error = text(&fields, "error").map(|text| {
        serde_json::from_str(&text).unwrap_or_else(|_| Failure::new(FailureKind::Other, text))
    });
    Some(TaskInfo {
        id,
        queue: text(&fields, "queue").unwrap_or_default(),
        state: state(&text(&fields, "state").unwrap_or_default()),
        priority: number(&fields, "priority").unwrap_or(0),
        attempts: number(&fields, "attempt").unwrap_or(0),
        failures: number(&fields, "failures").unwrap_or(0),
        crashes: number(&fields, "crashes").unwrap_or(0),
        enqueued_at: number(&fields, "enqueued_at").unwrap_or(0),
        ready_at: number(&fields, "ready_at").unwrap_or(0),
        started_at: number(&fields, "started_at"),
        finished_at: number(&fields, "finished_at"),
        expires_at: number(&fields, "expires_at"),
        worker: text(&fields, "worker"),
        lease_until: number(&fields, "lease_until"),
        cancel_requested: text(&fields, "cancel_requested").as_deref() == Some("1"),
        payload: fields.remove("payload").unwrap_or_default(),
        result: fields.remove("result"),
        error,
        reason: text(&fields, "reason"),
    })
}
