//! A task's way through the Redis store: enqueued, reserved under a lease, renewed,
//! completed (or reclaimed when its lease runs out), cancelled. Each step is a script in
//! `lua/`, one per queue touched.

use std::time::Duration;

use redis::{ErrorKind, ServerErrorKind, Value};

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

/// What `reserve.lua` answers: the lease's end, and per task its id, attempt, payload,
/// time limit, failures and crashes.
type Reserved = (Millis, Vec<(String, u32, Vec<u8>, String, u32, u32)>);

/// `reserve.lua` on one queue, for up to `max` tasks.
fn reserve_on<'a>(
    store: &'a RedisStore,
    worker: &str,
    queue: &str,
    max: usize,
    lease: Duration,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = store.on_queue(&store.scripts.reserve, queue);
    invocation
        .arg(store.now_arg())
        .arg(worker)
        .arg(max)
        .arg(millis(lease));
    invocation
}

/// The leases `reserve.lua` handed out on `queue`.
fn leases(store: &RedisStore, queue: &str, (lease_until, tasks): Reserved) -> Vec<Lease> {
    tasks
        .into_iter()
        .map(|(id, attempt, payload, limit, failures, crashes)| {
            let id = TaskId::new(id.parse().unwrap_or(0));
            store.remember(id, queue);
            Lease {
                id,
                attempt,
                queue: queue.to_owned(),
                payload,
                time_limit: limit.parse().ok().map(Duration::from_millis),
                lease_until,
                failures,
                crashes,
            }
        })
        .collect()
}

pub(super) fn reserve(
    store: &RedisStore,
    worker: &str,
    queues: &[&str],
    max: usize,
    lease: Duration,
) -> Result<Vec<Lease>> {
    let mut leases = Vec::new();
    reserve_more(store, worker, queues, max, lease, &mut leases)?;
    Ok(leases)
}

/// Adds to `leases`, up to `max` in all, from `queues` in turn.
fn reserve_more(
    store: &RedisStore,
    worker: &str,
    queues: &[&str],
    max: usize,
    lease: Duration,
    leases: &mut Vec<Lease>,
) -> Result<()> {
    for queue in queues {
        if leases.len() >= max {
            break;
        }
        let reserved: Result<Reserved> = store.link.call(false, |c| {
            reserve_on(store, worker, queue, max - leases.len(), lease).invoke(c)
        });
        match reserved {
            Ok(reserved) => leases.extend(self::leases(store, queue, reserved)),
            // What earlier queues handed out is leased already: hand it to the worker
            // rather than let it wait out its lease.
            Err(_) if !leases.is_empty() => break,
            Err(error) => return Err(error),
        }
    }
    Ok(())
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
            let policies: Vec<Policy> = if retrying {
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
            let invocation = complete_on(store, &queue, ended, &ids, &members, &policies);
            let answers: Vec<String> = store.link.call(false, |c| invocation.invoke(c))?;
            let stale = record(&mut completions, &members, answers);
            members = stale;
        }
    }
    Ok(completions)
}

/// A failure count and retry backoffs as read from a task, for `complete.lua`'s waits.
type Policy = (Option<u32>, Option<u64>, Option<u64>);

/// `complete.lua` on one queue, for the attempts of `ended` at `members`.
fn complete_on<'a>(
    store: &'a RedisStore,
    queue: &str,
    ended: &[(TaskId, u32, Outcome)],
    ids: &[TaskId],
    members: &[usize],
    policies: &[Policy],
) -> redis::ScriptInvocation<'a> {
    let mut invocation = store.on_queue(&store.scripts.complete, queue);
    invocation.arg(store.now_arg());
    for (&i, (failures, backoff, max_backoff)) in members.iter().zip(policies) {
        let (_, attempt, outcome) = &ended[i];
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
            _ => policy.backoff_before(ids[i], failures + 1),
        };
        invocation
            .arg(padded(ids[i]))
            .arg(*attempt)
            .arg(kind)
            .arg(data)
            .arg(text)
            .arg(failures)
            .arg(millis(wait));
    }
    invocation
}

/// Puts `complete.lua`'s answers for `members` into `completions`; returns the members
/// whose failures changed since they were read (to read and complete again).
fn record(completions: &mut [Completion], members: &[usize], answers: Vec<String>) -> Vec<usize> {
    let mut stale = Vec::new();
    for (&i, answer) in members.iter().zip(answers) {
        match answer.as_str() {
            "fenced" => completions[i] = Completion::Fenced,
            "stale" => stale.push(i),
            state_now => completions[i] = Completion::Recorded(state(state_now)),
        }
    }
    stale
}

/// `complete`, then `reserve`, in one round trip when no failure is retried (a retry's
/// wait is worked out from the failures read first) and the server is not a cluster (one
/// connection reaches every queue's keys).
pub(super) fn complete_and_reserve(
    store: &RedisStore,
    ended: &[(TaskId, u32, Outcome)],
    worker: &str,
    queues: &[&str],
    max: usize,
    lease: Duration,
) -> Result<(Vec<Completion>, Result<Vec<Lease>>)> {
    let retrying = ended
        .iter()
        .any(|(_, _, outcome)| matches!(outcome, Outcome::Failed { retry: true, .. }));
    let Some(&first) = queues.first() else {
        return Ok((complete(store, ended)?, Ok(Vec::new())));
    };
    if retrying || store.link.is_cluster() || max == 0 {
        let done = complete(store, ended)?;
        return Ok((done, reserve(store, worker, queues, max, lease)));
    }
    let ended = &cap_results(ended, store.result_limit)[..];
    let ids: Vec<TaskId> = ended.iter().map(|(id, _, _)| *id).collect();
    let groups: Vec<(String, Vec<usize>)> = store.by_queue(&ids)?.into_iter().collect();
    let invocations: Vec<_> = groups
        .iter()
        .map(|(queue, members)| {
            let policies = vec![(None, None, None); members.len()];
            complete_on(store, queue, ended, &ids, members, &policies)
        })
        .collect();
    let reserving = reserve_on(store, worker, first, max, lease);
    let answers: Vec<redis::RedisResult<Value>> = store.link.call(false, |c| {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for invocation in &invocations {
            pipe.invoke_script(invocation);
        }
        pipe.invoke_script(&reserving).query(c)
    })?;
    let mut answers = answers.into_iter();
    let mut completions = vec![Completion::Fenced; ended.len()];
    for ((_, members), invocation) in groups.iter().zip(&invocations) {
        let answer: Vec<String> = pipelined_answer(store, answers.next(), invocation)?;
        // No attempt here is a retry, so none is answered 'stale'.
        record(&mut completions, members, answer);
    }
    let reserved = pipelined_answer(store, answers.next(), &reserving)
        .map(|reserved| leases(store, first, reserved));
    let reserved = reserved.and_then(|mut got| {
        reserve_more(store, worker, &queues[1..], max, lease, &mut got)?;
        Ok(got)
    });
    Ok((completions, reserved))
}

/// A pipelined script's answer, decoded. A script the server did not know (it restarted
/// and forgot its scripts) did not run: it is run now, which loads it. Any other error is
/// the answer; so is a missing one (whether the script ran is not known, so it is not run
/// again).
fn pipelined_answer<T: redis::FromRedisValue>(
    store: &RedisStore,
    answer: Option<redis::RedisResult<Value>>,
    invocation: &redis::ScriptInvocation<'_>,
) -> Result<T> {
    let answer = answer.map(|answer| answer.and_then(|value| Ok(redis::from_redis_value(value)?)));
    match answer {
        Some(Ok(decoded)) => Ok(decoded),
        Some(Err(error)) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            store.link.call(false, |c| invocation.invoke(c))
        }
        Some(Err(error)) => Err(store.link.error(&error)),
        None => Err(QueueError::Redis {
            server: store.link.server().to_owned(),
            detail: "a pipelined script got no answer".to_owned(),
        }),
    }
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
