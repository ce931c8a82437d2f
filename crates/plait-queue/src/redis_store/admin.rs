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
    let queues = match queue {
        Some(queue) => vec![queue.to_owned()],
        None => store.all_queues()?,
    };
    let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
    let mut found: Vec<(f64, String, String)> = Vec::new();
    for queue in &queues {
        if limit == 0 {
            break;
        }
        let dead: Vec<(String, f64)> = store.link.call(true, |c| {
            c.zrange_withscores(store.keys.dead(queue), 0, stop)
        })?;
        found.extend(dead.into_iter().map(|(id, at)| (at, id, queue.clone())));
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    found.truncate(limit);
    let mut tasks = Vec::with_capacity(found.len());
    for (_, id, queue) in found {
        let id = TaskId::new(id.parse().unwrap_or(0));
        tasks.extend(store.task(&queue, id)?);
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
