//! A task's way through the Redis store: enqueued, reserved under a lease, renewed,
//! completed (or reclaimed when its lease runs out), cancelled. Each step is a script in
//! `lua/`, one per queue touched.

use std::time::Duration;

use super::RedisStore;
use super::decode::state;
use super::keys::padded;
use crate::clock::{Millis, millis};
use crate::error::{QueueError, Result};
use crate::failure::{Failure, FailureKind};
use crate::store::{cap_results, check_new_tasks};
use crate::task::{
    Beat, Cancel, Completion, Enqueued, Lease, NewTask, Outcome, RetryPolicy, Start, TaskId,
};

/// An outcome as `complete.lua` takes it: kind, data, the failure as text.
fn outcome_args(outcome: &Outcome) -> (&'static str, Vec<u8>, String) {
    let failure = |kind, failure: &Failure| {
        (
            kind,
            serde_json::to_vec(failure).unwrap_or_default(),
            failure.to_string(),
        )
    };
    match outcome {
        Outcome::Succeeded(result) => ("ok", result.clone(), String::new()),
        Outcome::Failed {
            failure: f,
            retry: true,
        } => failure("retry", f),
        Outcome::Failed { failure: f, .. } => failure("fail", f),
        Outcome::Crashed(f) => failure("crash", f),
        Outcome::Rejected(f) => failure("reject", f),
        Outcome::Released | Outcome::Deferred(_) => ("release", Vec::new(), String::new()),
        Outcome::Cancelled => failure(
            "cancel",
            &Failure::new(FailureKind::Cancelled, "cancelled while it ran"),
        ),
    }
}
/// The most milliseconds a script is given: Lua's numbers are doubles, exact to 2^53
/// (285,000 years), and larger ones would be stored in a form that does not read back.
fn exact(ms: Millis) -> Millis {
    ms.clamp(0, 1 << 53)
}

pub(super) fn enqueue_all(store: &RedisStore, tasks: &[NewTask]) -> Result<Vec<Enqueued>> {
    check_new_tasks(tasks, store.payload_limit)?;
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let mut queues: Vec<&str> = tasks.iter().map(|t| t.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    let first = store.take_ids(tasks.len() as u64)?;
    store.list_queues(&queues)?;
    // One script for all: atomic. On a cluster, one per queue (each queue's keys are on
    // one node), so a batch over several queues is atomic per queue.
    let batches: Vec<Vec<usize>> = if store.link.is_cluster() {
        queues
            .iter()
            .map(|queue| {
                (0..tasks.len())
                    .filter(|&i| tasks[i].queue == *queue)
                    .collect()
            })
            .collect()
    } else {
        vec![(0..tasks.len()).collect()]
    };
    let mut done = vec![None; tasks.len()];
    for batch in batches {
        let mut invocation = store.scripts.enqueue.prepare_invoke();
        let mut routed: Vec<&str> = batch.iter().map(|&i| tasks[i].queue.as_str()).collect();
        routed.sort_unstable();
        routed.dedup();
        for queue in routed {
            invocation.key(store.keys.counts(queue));
        }
        invocation.arg(store.now_arg());
        for &i in &batch {
            let task = &tasks[i];
            let id = TaskId::new(first + i as u64);
            let (start, at) = match task.start {
                Start::Now => ("now", 0),
                Start::At(at) => (
                    "at",
                    exact(at.duration_since(std::time::UNIX_EPOCH).map_or(0, millis)),
                ),
                Start::After(delay) => ("after", exact(millis(delay))),
            };
            let retry = &task.retry;
            invocation
                .arg(store.keys.prefix(&task.queue))
                .arg(padded(id))
                .arg(task.key.as_deref().unwrap_or(""))
                .arg(task.priority)
                .arg(start)
                .arg(at)
                .arg(&task.payload[..])
                .arg(retry.max_retries)
                .arg(millis(retry.backoff))
                .arg(millis(retry.max_backoff))
                .arg(retry.crash_budget.max(1))
                .arg(
                    task.time_limit
                        .map_or_else(String::new, |l| millis(l).to_string()),
                )
                .arg(exact(millis(task.result_ttl)));
        }
        let answers: Vec<(String, u8)> = store.link.call(false, |c| invocation.invoke(c))?;
        for (&i, (id, created)) in batch.iter().zip(answers) {
            let id = TaskId::new(id.parse().unwrap_or(0));
            store.remember(id, &tasks[i].queue);
            done[i] = Some(Enqueued {
                id,
                created: created == 1,
            });
        }
    }
    let done: Vec<Enqueued> = done.into_iter().flatten().collect();
    Ok(done)
}

pub(super) fn reserve(
    store: &RedisStore,
    worker: &str,
    queues: &[&str],
    max: usize,
    lease: Duration,
) -> Result<Vec<Lease>> {
    type Reserved = (Millis, Vec<(String, u32, Vec<u8>, String, u32, u32)>);
    let mut leases = Vec::new();
    for queue in queues {
        if leases.len() >= max {
            break;
        }
        let reserved: Result<Reserved> = store.link.call(false, |c| {
            store
                .on_queue(&store.scripts.reserve, queue)
                .arg(store.now_arg())
                .arg(worker)
                .arg(max - leases.len())
                .arg(millis(lease))
                .invoke(c)
        });
        let (lease_until, tasks) = match reserved {
            Ok(reserved) => reserved,
            // What earlier queues handed out is leased already: hand it to the worker
            // rather than let it wait out its lease.
            Err(_) if !leases.is_empty() => break,
            Err(error) => return Err(error),
        };
        for (id, attempt, payload, limit, failures, crashes) in tasks {
            let id = TaskId::new(id.parse().unwrap_or(0));
            store.remember(id, queue);
            leases.push(Lease {
                id,
                attempt,
                queue: (*queue).to_owned(),
                payload,
                time_limit: limit.parse().ok().map(Duration::from_millis),
                lease_until,
                failures,
                crashes,
            });
        }
    }
    Ok(leases)
}

pub(super) fn heartbeat(
    store: &RedisStore,
    attempts: &[(TaskId, u32)],
    lease: Duration,
) -> Result<Vec<Beat>> {
    let ids: Vec<TaskId> = attempts.iter().map(|(id, _)| *id).collect();
    let mut beats = vec![Beat::Lost; attempts.len()];
    for (queue, members) in store.by_queue(&ids)? {
        let mut invocation = store.on_queue(&store.scripts.heartbeat, &queue);
        invocation.arg(store.now_arg()).arg(millis(lease));
        for &i in &members {
            invocation.arg(padded(attempts[i].0)).arg(attempts[i].1);
        }
        let answers: Vec<String> = store.link.call(true, |c| invocation.invoke(c))?;
        for (&i, answer) in members.iter().zip(answers) {
            beats[i] = match answer.as_str() {
                "renewed" => Beat::Renewed,
                "cancel" => Beat::CancelRequested,
                _ => Beat::Lost,
            };
        }
    }
    Ok(beats)
}

pub(super) fn complete(
    store: &RedisStore,
    ended: &[(TaskId, u32, Outcome)],
) -> Result<Vec<Completion>> {
    let ended = &cap_results(ended, store.result_limit)[..];
    let ids: Vec<TaskId> = ended.iter().map(|(id, _, _)| *id).collect();
    let mut completions = vec![Completion::Fenced; ended.len()];
    for (queue, mut members) in store.by_queue(&ids)? {
        // A retry's wait depends on the failures so far: read them, and go again for
        // any that changed in between.
        for _ in 0..3 {
            if members.is_empty() {
                break;
            }
            // Read only when a failure may be retried (a success needs no wait).
            let retrying = members
                .iter()
                .any(|&i| matches!(ended[i].2, Outcome::Failed { retry: true, .. }));
            let policies: Vec<(Option<u32>, Option<u64>, Option<u64>)> = if retrying {
                store.link.call(true, |c| {
                    let mut pipe = redis::pipe();
                    for &i in &members {
                        pipe.hmget(
                            store.keys.task(&queue, ids[i]),
                            &["failures", "backoff_ms", "max_backoff_ms"],
                        );
                    }
                    pipe.query(c)
                })?
            } else {
                vec![(None, None, None); members.len()]
            };
            let mut invocation = store.on_queue(&store.scripts.complete, &queue);
            invocation.arg(store.now_arg());
            for (&i, (failures, backoff, max_backoff)) in members.iter().zip(&policies) {
                let (id, attempt, outcome) = &ended[i];
                let (kind, data, text) = outcome_args(outcome);
                let policy = RetryPolicy {
                    backoff: Duration::from_millis(backoff.unwrap_or(0)),
                    max_backoff: Duration::from_millis(max_backoff.unwrap_or(0)),
                    ..RetryPolicy::never()
                };
                let failures = failures.unwrap_or(0);
                // The wait before a retry, or before a deferred task may start.
                let wait = match outcome {
                    Outcome::Deferred(wait) => *wait,
                    Outcome::Released => Duration::ZERO,
                    _ => policy.backoff_before(*id, failures + 1),
                };
                invocation
                    .arg(padded(*id))
                    .arg(*attempt)
                    .arg(kind)
                    .arg(data)
                    .arg(text)
                    .arg(failures)
                    .arg(millis(wait));
            }
            let answers: Vec<String> = store.link.call(false, |c| invocation.invoke(c))?;
            let mut stale = Vec::new();
            for (&i, answer) in members.iter().zip(answers) {
                match answer.as_str() {
                    "fenced" => completions[i] = Completion::Fenced,
                    "stale" => stale.push(i),
                    state_now => completions[i] = Completion::Recorded(state(state_now)),
                }
            }
            members = stale;
        }
    }
    Ok(completions)
}

pub(super) fn reclaim_expired(store: &RedisStore) -> Result<usize> {
    let mut reclaimed = 0;
    for queue in store.all_queues()? {
        let n: usize = store.link.call(false, |c| {
            store
                .on_queue(&store.scripts.reclaim, &queue)
                .arg(store.now_arg())
                .invoke(c)
        })?;
        reclaimed += n;
    }
    Ok(reclaimed)
}

pub(super) fn cancel(store: &RedisStore, id: TaskId) -> Result<Cancel> {
    let not_found = || QueueError::NotFound { id: id.get() };
    let queue = store.homes(&[id])?.remove(0).ok_or_else(not_found)?;
    let failure = Failure::new(FailureKind::Cancelled, "cancelled before it ran");
    let answer: String = store.link.call(true, |c| {
        store
            .on_queue(&store.scripts.cancel, &queue)
            .arg(store.now_arg())
            .arg(padded(id))
            .arg(serde_json::to_string(&failure).unwrap_or_default())
            .invoke(c)
    })?;
    Ok(match answer.as_str() {
        "now" => Cancel::Cancelled,
        "requested" => Cancel::Requested,
        "missing" => return Err(not_found()),
        finished => Cancel::AlreadyFinished(state(
            finished.strip_prefix("finished:").unwrap_or(finished),
        )),
    })
}
