//! Reading the Redis store's records back: a task's hash as a [`TaskInfo`], a worker's
//! JSON as a [`WorkerInfo`].

use crate::failure::{Failure, FailureKind};
use crate::task::{State, TaskId, TaskInfo};

/// The fields of a task's hash that a [`TaskInfo`] shows, read with one `HMGET`: its answer
/// is the values alone, where `HGETALL`'s is every name and value, read into a map. A reader
/// of many tasks (a gather of thousands) spends most of its time on that.
pub(super) const TASK_FIELDS: [&str; 18] = [
    "state",
    "queue",
    "priority",
    "attempt",
    "failures",
    "crashes",
    "enqueued_at",
    "ready_at",
    "started_at",
    "finished_at",
    "expires_at",
    "worker",
    "lease_until",
    "cancel_requested",
    "payload",
    "result",
    "error",
    "reason",
];

/// A task's hash as read: the value of each of [`TASK_FIELDS`], in order (`None`: not set).
pub(super) type Fields = Vec<Option<Vec<u8>>>;

pub(super) fn state(text: &str) -> State {
    match text {
        "queued" => State::Queued,
        "running" => State::Running,
        "succeeded" => State::Succeeded,
        "dead" => State::Dead,
        _ => State::Cancelled,
    }
}

fn text(value: Option<Vec<u8>>) -> Option<String> {
    value.map(|bytes| {
        String::from_utf8(bytes)
            .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned())
    })
}

fn number<N: std::str::FromStr>(value: Option<&[u8]>) -> Option<N> {
    std::str::from_utf8(value?).ok()?.parse().ok()
}

/// The task in `fields` (no state: the task is gone).
pub(super) fn task_info(id: TaskId, fields: Fields) -> Option<TaskInfo> {
    let [
        stored_state,
        queue,
        priority,
        attempt,
        failures,
        crashes,
        enqueued_at,
        ready_at,
        started_at,
        finished_at,
        expires_at,
        worker,
        lease_until,
        cancel_requested,
        payload,
        result,
        error,
        reason,
    ] = <[Option<Vec<u8>>; TASK_FIELDS.len()]>::try_from(fields).ok()?;
    let stored_state = text(stored_state)?;
    let error = text(error).map(|text| {
        serde_json::from_str(&text).unwrap_or_else(|_| Failure::new(FailureKind::Other, text))
    });
    Some(TaskInfo {
        id,
        queue: text(queue).unwrap_or_default(),
        state: state(&stored_state),
        priority: number(priority.as_deref()).unwrap_or(0),
        attempts: number(attempt.as_deref()).unwrap_or(0),
        failures: number(failures.as_deref()).unwrap_or(0),
        crashes: number(crashes.as_deref()).unwrap_or(0),
        enqueued_at: number(enqueued_at.as_deref()).unwrap_or(0),
        ready_at: number(ready_at.as_deref()).unwrap_or(0),
        started_at: number(started_at.as_deref()),
        finished_at: number(finished_at.as_deref()),
        expires_at: number(expires_at.as_deref()),
        worker: text(worker),
        lease_until: number(lease_until.as_deref()),
        cancel_requested: cancel_requested.as_deref() == Some(b"1"),
        payload: payload.unwrap_or_default(),
        result,
        error,
        reason: text(reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash read as `HMGET` answers it: the values of those of `set` that
    /// [`TASK_FIELDS`] names, in its order.
    fn read(set: &[(&str, &str)]) -> Fields {
        TASK_FIELDS
            .iter()
            .map(|name| {
                set.iter()
                    .find(|(field, _)| field == name)
                    .map(|(_, value)| value.as_bytes().to_vec())
            })
            .collect()
    }

    #[test]
    fn each_field_is_read_into_its_place() {
        let task = task_info(
            TaskId::new(7),
            read(&[
                ("state", "running"),
                ("queue", "mail"),
                ("priority", "-3"),
                ("attempt", "2"),
                ("failures", "1"),
                ("crashes", "4"),
                ("enqueued_at", "10"),
                ("ready_at", "11"),
                ("started_at", "12"),
                ("finished_at", "13"),
                ("expires_at", "14"),
                ("worker", "w1"),
                ("lease_until", "15"),
                ("cancel_requested", "1"),
                ("payload", "the payload"),
                ("result", "the result"),
                ("error", "not JSON"),
                ("reason", "why"),
            ]),
        )
        .expect("a hash with a state is a task");
        assert_eq!(task.id, TaskId::new(7));
        assert_eq!((task.queue.as_str(), task.state), ("mail", State::Running));
        assert_eq!(
            (task.priority, task.attempts, task.failures, task.crashes),
            (-3, 2, 1, 4)
        );
        assert_eq!((task.enqueued_at, task.ready_at), (10, 11));
        assert_eq!(
            (task.started_at, task.finished_at, task.expires_at),
            (Some(12), Some(13), Some(14))
        );
        assert_eq!(
            (task.worker.as_deref(), task.lease_until),
            (Some("w1"), Some(15))
        );
        assert!(task.cancel_requested);
        assert_eq!(task.payload, b"the payload");
        assert_eq!(task.result.as_deref(), Some(&b"the result"[..]));
        assert_eq!(
            task.error,
            Some(Failure::new(FailureKind::Other, "not JSON"))
        );
        assert_eq!(task.reason.as_deref(), Some("why"));
    }

    #[test]
    fn fields_not_set_read_as_their_defaults() {
        let task = task_info(TaskId::new(1), read(&[("state", "queued")])).unwrap();
        assert_eq!(task.state, State::Queued);
        assert_eq!((task.priority, task.attempts, task.enqueued_at), (0, 0, 0));
        assert_eq!(
            (task.started_at, task.worker, task.result),
            (None, None, None)
        );
        assert!(!task.cancel_requested && task.payload.is_empty());
    }

    #[test]
    fn a_hash_without_a_state_is_a_task_gone() {
        assert!(task_info(TaskId::new(1), read(&[])).is_none());
        assert!(task_info(TaskId::new(1), read(&[("queue", "mail")])).is_none());
        // An answer of another length is not read as a task.
        assert!(task_info(TaskId::new(1), vec![Some(b"queued".to_vec())]).is_none());
    }
}
