//! Looking at the Redis store's queues and the operator's actions on them (requeue the
//! dead, purge, expire results), and the worker registry.

use std::collections::HashMap;

use redis::Commands;

use super::RedisStore;
use super::keys::padded;
use crate::clock::Millis;
use crate::error::Result;
use crate::registry::{KEEP_GONE_MS, WorkerInfo};
use crate::store::Store;
use crate::task::{QueueStats, TaskId, TaskInfo};

const BATCH: usize = super::BATCH;

pub(super) fn queues(store: &RedisStore) -> Result<Vec<QueueStats>> {
    let now = store.now();
    let mut stats = Vec::new();
    for queue in store.all_queues()? {
        let (counts, scheduled): (HashMap<String, i64>, u64) = store.link.call(true, |c| {
            redis::pipe()
                .hgetall(store.keys.counts(&queue))
                .zcount(store.keys.delayed(&queue), format!("({now}"), "+inf")
                .query(c)
        })?;
        let n = |state: &str| u64::try_from(counts.get(state).copied().unwrap_or(0)).unwrap_or(0);
        let entry = QueueStats {
            ready: n("queued").saturating_sub(scheduled),
            scheduled,
            running: n("running"),
            succeeded: n("succeeded"),
            dead: n("dead"),
            cancelled: n("cancelled"),
            queue,
        };
        if counts.values().any(|&n| n > 0) {
            stats.push(entry);
        }
    }
    Ok(stats)
}

pub(super) fn dead(store: &RedisStore, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
    by_score(store, queue, limit, limit, |q| store.keys.dead(q), |_| true)
}

pub(super) fn running(
    store: &RedisStore,
    queue: Option<&str>,
    limit: usize,
) -> Result<Vec<TaskInfo>> {
    // By when the lease ends, which for leases of one length is by start.
    let mut running = by_score(
        store,
        queue,
        limit,
        limit,
        |q| store.keys.leases(q),
        |_| true,
    )?;
    running.sort_by_key(|task| (task.started_at, task.id));
    Ok(running)
}

/// How many delayed tasks of a queue are looked at for those waiting for a retry: tasks
/// scheduled for later share the set, and a listing for a page need not read them all.
const RETRY_SCAN: usize = 1_000;

pub(super) fn retrying(
    store: &RedisStore,
    queue: Option<&str>,
    limit: usize,
) -> Result<Vec<TaskInfo>> {
    by_score(
        store,
        queue,
        limit,
        RETRY_SCAN.max(limit),
        |q| store.keys.delayed(q),
        |task| task.failures > 0 || task.crashes > 0,
    )
}

/// The tasks of one queue's sorted set (or every queue's), lowest score first, at most
/// `limit` of those that `keep` keeps, from the first `scan` members of each set.
fn by_score(
    store: &RedisStore,
    queue: Option<&str>,
    limit: usize,
    scan: usize,
    set: impl Fn(&str) -> String,
    keep: impl Fn(&TaskInfo) -> bool,
) -> Result<Vec<TaskInfo>> {
    let queues = match queue {
        Some(queue) => vec![queue.to_owned()],
        None => store.all_queues()?,
    };
    let stop = isize::try_from(scan).unwrap_or(isize::MAX) - 1;
    let mut found: Vec<(f64, String, String)> = Vec::new();
    for queue in &queues {
        if limit == 0 {
            break;
        }
        let members: Vec<(String, f64)> = store
            .link
            .call(true, |c| c.zrange_withscores(set(queue), 0, stop))?;
        found.extend(members.into_iter().map(|(id, at)| (at, id, queue.clone())));
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut tasks = Vec::with_capacity(limit.min(found.len()));
    for (_, id, queue) in found {
        if tasks.len() == limit {
            break;
        }
        let id = TaskId::new(id.parse().unwrap_or(0));
        tasks.extend(store.task(&queue, id)?.filter(&keep));
    }
    Ok(tasks)
}

pub(super) fn requeue_dead(store: &RedisStore, ids: Option<&[TaskId]>) -> Result<usize> {
    let groups: Vec<(String, Vec<String>)> = match ids {
        None => store
            .all_queues()?
            .into_iter()
            .map(|queue| (queue, Vec::new()))
            .collect(),
        Some(ids) => store
            .by_queue(ids)?
            .into_iter()
            .map(|(queue, members)| (queue, members.iter().map(|&i| padded(ids[i])).collect()))
            .collect(),
    };
    let mut requeued = 0;
    for (queue, members) in groups {
        let n: usize = store.link.call(true, |c| {
            store
                .on_queue(&store.scripts.requeue_dead, &queue)
                .arg(store.now_arg())
                .arg(&members)
                .invoke(c)
        })?;
        requeued += n;
    }
    Ok(requeued)
}

pub(super) fn purge(store: &RedisStore, queue: Option<&str>) -> Result<usize> {
    let queues = match queue {
        Some(queue) => vec![queue.to_owned()],
        None => store.all_queues()?,
    };
    let mut purged = 0;
    for queue in queues {
        loop {
            let ids: Vec<String> = store.link.call(true, |c| {
                store
                    .on_queue(&store.scripts.purge, &queue)
                    .arg(BATCH)
                    .invoke(c)
            })?;
            if ids.is_empty() {
                break;
            }
            purged += ids.len();
            store.forget(&ids);
        }
    }
    Ok(purged)
}

pub(super) fn expire_results(store: &RedisStore) -> Result<usize> {
    let mut expired = 0;
    for queue in store.all_queues()? {
        loop {
            let ids: Vec<String> = store.link.call(true, |c| {
                store
                    .on_queue(&store.scripts.expire, &queue)
                    .arg(store.now_arg())
                    .arg(BATCH)
                    .invoke(c)
            })?;
            if ids.is_empty() {
                break;
            }
            expired += ids.len();
            store.forget(&ids);
        }
    }
    Ok(expired)
}

pub(super) fn worker_seen(store: &RedisStore, worker: &WorkerInfo) -> Result<()> {
    let now = store.now();
    let key = store.keys.workers();
    let all: HashMap<String, String> = store.link.call(true, |c| c.hgetall(&key))?;
    let known = all
        .get(&worker.name)
        .and_then(|json| serde_json::from_str::<WorkerInfo>(json).ok());
    let record = WorkerInfo {
        started_at: known.as_ref().map_or(now, |w| w.started_at),
        stopped_at: known.as_ref().and_then(|w| w.stopped_at),
        seen_at: now,
        ..worker.clone()
    };
    // Workers gone for a day are forgotten.
    let gone: Vec<&String> = all
        .iter()
        .filter_map(|(name, json)| {
            let w = serde_json::from_str::<WorkerInfo>(json).ok()?;
            let lease = Millis::try_from(w.lease_ms).unwrap_or(Millis::MAX);
            let forget = w.seen_at < now - KEEP_GONE_MS
                && (w.stopped_at.is_some() || w.seen_at.saturating_add(lease) < now);
            (forget && *name != worker.name).then_some(name)
        })
        .collect();
    let json = serde_json::to_string(&record).unwrap_or_default();
    store.link.call(true, |c| {
        let mut pipe = redis::pipe();
        pipe.hset(&key, &worker.name, &json).ignore();
        if !gone.is_empty() {
            pipe.hdel(&key, &gone).ignore();
        }
        pipe.query::<()>(c)
    })
}

pub(super) fn worker_stopped(store: &RedisStore, worker: &WorkerInfo) -> Result<()> {
    let now = store.now();
    let key = store.keys.workers();
    let known: Option<String> = store.link.call(true, |c| c.hget(&key, &worker.name))?;
    let Some(mut record) = known.and_then(|json| serde_json::from_str::<WorkerInfo>(&json).ok())
    else {
        return Ok(());
    };
    record.stopped_at = Some(now);
    record.seen_at = now;
    record.running = 0;
    record.succeeded = worker.succeeded;
    record.failed = worker.failed;
    record.durations = worker.durations.clone();
    let json = serde_json::to_string(&record).unwrap_or_default();
    store
        .link
        .call(true, |c| c.hset::<_, _, _, ()>(&key, &worker.name, &json))
}

pub(super) fn workers(store: &RedisStore) -> Result<Vec<WorkerInfo>> {
    let all: HashMap<String, String> =
        store.link.call(true, |c| c.hgetall(store.keys.workers()))?;
    let mut workers: Vec<WorkerInfo> = all
        .values()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect();
    workers.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(workers)
}
