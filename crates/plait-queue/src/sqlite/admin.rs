//! Looking at the embedded store's tasks, and the operator's actions on them: cancel,
//! requeue the dead, purge, expire results.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::counts::Tally;
use super::lifecycle::{id_value, task_id, to_json};
use super::schema::{CANCELLED, DEAD, QUEUED, RUNNING, SUCCEEDED};
use crate::clock::Millis;
use crate::failure::{Failure, FailureKind};
use crate::task::{Cancel, QueueStats, State, TaskId, TaskInfo};

const COLUMNS: &str = "id, queue, state, priority, attempt, failures, crashes, enqueued_at,
    ready_at, started_at, finished_at, expires_at, worker, lease_until, cancel_requested,
    payload, result, error, reason";

fn state(stored: i64) -> State {
    match stored {
        QUEUED => State::Queued,
        RUNNING => State::Running,
        SUCCEEDED => State::Succeeded,
        DEAD => State::Dead,
        _ => State::Cancelled,
    }
}

fn task_info(row: &Row<'_>) -> rusqlite::Result<TaskInfo> {
    let error: Option<String> = row.get(17)?;
    Ok(TaskInfo {
        id: task_id(row.get(0)?),
        queue: row.get(1)?,
        state: state(row.get(2)?),
        priority: row.get(3)?,
        attempts: row.get(4)?,
        failures: row.get(5)?,
        crashes: row.get(6)?,
        enqueued_at: row.get(7)?,
        ready_at: row.get(8)?,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
        expires_at: row.get(11)?,
        worker: row.get(12)?,
        lease_until: row.get(13)?,
        cancel_requested: row.get(14)?,
        payload: row.get(15)?,
        result: row.get(16)?,
        // Written by this store from a `Failure`; should it not read back, the text stands.
        error: error.map(|text| {
            serde_json::from_str(&text).unwrap_or_else(|_| Failure::new(FailureKind::Other, text))
        }),
        reason: row.get(18)?,
    })
}

pub(super) fn get(conn: &Connection, id: TaskId) -> rusqlite::Result<Option<TaskInfo>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id_value(id)], task_info)
        .optional()
}

pub(super) fn cancel(
    tx: &Transaction<'_>,
    id: TaskId,
    now: Millis,
) -> rusqlite::Result<Option<Cancel>> {
    let found: Option<(i64, i64, String)> = tx
        .prepare_cached("SELECT state, result_ttl_ms, queue FROM tasks WHERE id = ?1")?
        .query_row([id_value(id)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((stored, ttl, queue)) = found else {
        return Ok(None);
    };
    let cancel = match stored {
        QUEUED => {
            let failure = Failure::new(FailureKind::Cancelled, "cancelled before it ran");
            tx.prepare_cached(
                "UPDATE tasks SET state = ?1, finished_at = ?2, expires_at = ?3, error = ?4,
                                  reason = 'cancelled before it ran'
                  WHERE id = ?5",
            )?
            .execute(params![
                CANCELLED,
                now,
                now.saturating_add(ttl),
                to_json(&failure),
                id_value(id)
            ])?;
            let mut tally = Tally::default();
            tally.moved(&queue, QUEUED, CANCELLED);
            tally.write(tx)?;
            Cancel::Cancelled
        }
        RUNNING => {
            tx.prepare_cached("UPDATE tasks SET cancel_requested = 1 WHERE id = ?1")?
                .execute([id_value(id)])?;
            Cancel::Requested
        }
        other => Cancel::AlreadyFinished(state(other)),
    };
    Ok(Some(cancel))
}

/// When the earliest waiting task on `queues` is ready.
pub(super) fn next_ready(conn: &Connection, queues: &[&str]) -> rusqlite::Result<Option<Millis>> {
    let mut earliest: Option<Millis> = None;
    let mut first =
        conn.prepare_cached("SELECT min(ready_at) FROM tasks WHERE state = 0 AND queue = ?1")?;
    for queue in queues {
        let at: Option<Millis> = first.query_row([queue], |row| row.get(0))?;
        earliest = match (earliest, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(earliest)
}

/// Every queue's tasks by state, from the kept counts (no scan of the tasks);
/// the scheduled ones from the index of delayed tasks.
pub(super) fn queues(conn: &Connection, now: Millis) -> rusqlite::Result<Vec<QueueStats>> {
    let mut stats: BTreeMap<String, QueueStats> = BTreeMap::new();
    let mut counts = conn.prepare_cached("SELECT queue, state, n FROM counts WHERE n > 0")?;
    let mut rows = counts.query([])?;
    while let Some(row) = rows.next()? {
        let queue: String = row.get(0)?;
        let n = u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0);
        let entry = stats.entry(queue.clone()).or_insert_with(|| QueueStats {
            queue,
            ..QueueStats::default()
        });
        match row.get::<_, i64>(1)? {
            QUEUED => entry.ready = n,
            RUNNING => entry.running = n,
            SUCCEEDED => entry.succeeded = n,
            DEAD => entry.dead = n,
            _ => entry.cancelled = n,
        }
    }
    let mut scheduled = conn.prepare_cached(
        "SELECT queue, count(*) FROM tasks
          WHERE state = 0 AND ready_at > enqueued_at AND ready_at > ?1 GROUP BY queue",
    )?;
    let mut rows = scheduled.query([now])?;
    while let Some(row) = rows.next()? {
        let queue: String = row.get(0)?;
        let n = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
        if let Some(entry) = stats.get_mut(&queue) {
            entry.scheduled = n;
            entry.ready = entry.ready.saturating_sub(n);
        }
    }
    Ok(stats.into_values().collect())
}

pub(super) fn dead(
    conn: &Connection,
    queue: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<TaskInfo>> {
    listing(conn, "state = 3", "finished_at, id", queue, limit)
}

pub(super) fn running(
    conn: &Connection,
    queue: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<TaskInfo>> {
    listing(conn, "state = 1", "started_at, id", queue, limit)
}

/// Waiting tasks with a failed or crashed attempt behind them. A retry's backoff puts
/// `ready_at` after `enqueued_at`, so the partial index of delayed tasks holds them all.
pub(super) fn retrying(
    conn: &Connection,
    queue: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<TaskInfo>> {
    listing(
        conn,
        "state = 0 AND ready_at > enqueued_at AND (failures > 0 OR crashes > 0)",
        "ready_at, id",
        queue,
        limit,
    )
}

/// The tasks `filter` selects (SQL, fixed by the caller), in `order`, of one queue or all.
fn listing(
    conn: &Connection,
    filter: &str,
    order: &str,
    queue: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<TaskInfo>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE {filter} AND (?1 IS NULL OR queue = ?1)
          ORDER BY {order} LIMIT ?2"
    ))?
    .query_map(params![queue, limit], task_info)?
    .collect()
}

pub(super) fn requeue_dead(
    tx: &Transaction<'_>,
    ids: Option<&[TaskId]>,
    now: Millis,
) -> rusqlite::Result<usize> {
    const REQUEUE: &str = "UPDATE tasks SET state = 0, failures = 0, crashes = 0, ready_at = ?1,
                                  finished_at = NULL, expires_at = NULL, reason = NULL
                            WHERE state = 3";
    let mut tally = Tally::default();
    let mut requeued = 0;
    let mut count = |queue: String| {
        tally.moved(&queue, DEAD, QUEUED);
        requeued += 1;
    };
    match ids {
        None => {
            let mut all = tx.prepare_cached(&format!("{REQUEUE} RETURNING queue"))?;
            let mut rows = all.query([now])?;
            while let Some(row) = rows.next()? {
                count(row.get(0)?);
            }
        }
        Some(ids) => {
            let mut one = tx.prepare_cached(&format!("{REQUEUE} AND id = ?2 RETURNING queue"))?;
            for id in ids {
                if let Some(queue) = one
                    .query_row(params![now, id_value(*id)], |row| row.get(0))
                    .optional()?
                {
                    count(queue);
                }
            }
        }
    }
    tally.write(tx)?;
    Ok(requeued)
}

pub(super) fn purge(tx: &Transaction<'_>, queue: Option<&str>) -> rusqlite::Result<usize> {
    deleting(
        tx,
        "DELETE FROM tasks WHERE state = 0 AND (?1 IS NULL OR queue = ?1) RETURNING queue, state",
        params![queue],
    )
}

pub(super) fn expire(tx: &Transaction<'_>, now: Millis) -> rusqlite::Result<usize> {
    deleting(
        tx,
        "DELETE FROM tasks WHERE expires_at <= ?1 AND state IN (?2, ?3) RETURNING queue, state",
        params![now, SUCCEEDED, CANCELLED],
    )
}

/// Runs a `DELETE … RETURNING queue, state`, and takes what it deleted off the counts.
fn deleting(
    tx: &Transaction<'_>,
    sql: &str,
    values: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    let mut tally = Tally::default();
    let mut deleted = 0;
    let mut statement = tx.prepare_cached(sql)?;
    let mut rows = statement.query(values)?;
    while let Some(row) = rows.next()? {
        let queue: String = row.get(0)?;
        tally.add(&queue, row.get(1)?, -1);
        deleted += 1;
    }
    drop(rows);
    tally.write(tx)?;
    Ok(deleted)
}
