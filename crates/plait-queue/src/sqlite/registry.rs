//! The embedded store's worker registry, and its rate limits' token buckets.

use rusqlite::{Connection, Row, Transaction, params};

use crate::clock::Millis;
use crate::registry::{Durations, KEEP_GONE_MS, WorkerInfo};

/// Records that `worker` was heard from at `now`: registers it on first sight (its start
/// is then `now`), renews it after. Forgets workers gone for longer than a day.
pub(super) fn seen(tx: &Transaction<'_>, worker: &WorkerInfo, now: Millis) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO workers (name, host, pid, queues, concurrency, running, succeeded, failed,
                              started_at, seen_at, stopped_at, lease_ms, durations)
              VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, NULL, ?10, ?11)
         ON CONFLICT (name) DO UPDATE
            SET running = excluded.running, succeeded = excluded.succeeded,
                failed = excluded.failed, queues = excluded.queues,
                concurrency = excluded.concurrency, lease_ms = excluded.lease_ms,
                seen_at = excluded.seen_at, durations = excluded.durations",
    )?
    .execute(params![
        worker.name,
        worker.host,
        worker.pid,
        worker.queues.join(","),
        worker.concurrency,
        worker.running,
        i64::try_from(worker.succeeded).unwrap_or(i64::MAX),
        i64::try_from(worker.failed).unwrap_or(i64::MAX),
        now,
        i64::try_from(worker.lease_ms).unwrap_or(i64::MAX),
        durations_json(&worker.durations),
    ])?;
    tx.prepare_cached(
        "DELETE FROM workers WHERE seen_at < ?1 AND (stopped_at IS NOT NULL OR seen_at + lease_ms < ?2)",
    )?
    .execute(params![now - KEEP_GONE_MS, now])?;
    Ok(())
}

/// Records that `worker` stopped in order at `now`, with its final counts.
pub(super) fn stopped(
    tx: &Transaction<'_>,
    worker: &WorkerInfo,
    now: Millis,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE workers SET stopped_at = ?2, seen_at = ?2, running = 0, succeeded = ?3,
                failed = ?4, durations = ?5
          WHERE name = ?1",
    )?
    .execute(params![
        worker.name,
        now,
        i64::try_from(worker.succeeded).unwrap_or(i64::MAX),
        i64::try_from(worker.failed).unwrap_or(i64::MAX),
        durations_json(&worker.durations),
    ])?;
    Ok(())
}

/// Every worker the registry holds, the latest started first.
pub(super) fn list(conn: &Connection) -> rusqlite::Result<Vec<WorkerInfo>> {
    conn.prepare_cached(
        "SELECT name, host, pid, queues, concurrency, running, succeeded, failed, started_at,
                seen_at, stopped_at, lease_ms, durations
           FROM workers ORDER BY started_at DESC, name",
    )?
    .query_map([], worker_info)?
    .collect()
}

fn worker_info(row: &Row<'_>) -> rusqlite::Result<WorkerInfo> {
    let queues: String = row.get(3)?;
    let count = |i| row.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(WorkerInfo {
        name: row.get(0)?,
        host: row.get(1)?,
        pid: row.get(2)?,
        queues: queues.split(',').map(str::to_owned).collect(),
        concurrency: row.get(4)?,
        running: row.get(5)?,
        succeeded: count(6)?,
        failed: count(7)?,
        started_at: row.get(8)?,
        seen_at: row.get(9)?,
        stopped_at: row.get(10)?,
        lease_ms: count(11)?,
        // Unreadable (written by hand?) reads as none recorded, rather than hiding the worker.
        durations: serde_json::from_str(&row.get::<_, String>(12)?).unwrap_or_default(),
    })
}

fn durations_json(durations: &Durations) -> String {
    serde_json::to_string(durations).unwrap_or_default()
}

/// Takes a token from the bucket `name` (made full on first use), refilled for the time
/// since it was last drawn from; `None` if taken, else how long until one is there.
pub(super) fn take_token(
    tx: &Transaction<'_>,
    name: &str,
    limit: crate::RateLimit,
    now: Millis,
) -> rusqlite::Result<Option<std::time::Duration>> {
    use rusqlite::OptionalExtension;
    let burst = f64::from(limit.burst_size());
    let held: Option<(f64, Millis)> = tx
        .prepare_cached("SELECT tokens, at FROM limits WHERE name = ?1")?
        .query_row([name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (tokens, at) = held.unwrap_or((burst, now));
    let elapsed = (now - at).max(0) as f64 / 1000.0;
    let tokens = (tokens + elapsed * limit.rate()).min(burst);
    let (left, taken) = if tokens >= 1.0 {
        (tokens - 1.0, true)
    } else {
        (tokens, false)
    };
    tx.prepare_cached(
        "INSERT INTO limits (name, tokens, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
    )?
    .execute(params![name, left, now])?;
    Ok((!taken).then(|| limit.wait_for_token(tokens)))
}
