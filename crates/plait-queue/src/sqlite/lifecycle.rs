//! A task's way through the embedded store: enqueued, reserved under a lease, renewed,
//! completed (or reclaimed when its lease runs out). Each function runs inside the
//! caller's write transaction.

use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};

use super::counts::{Tally, stored};
use super::schema::{CANCELLED, DEAD, QUEUED, RUNNING, SUCCEEDED};
use crate::clock::{Millis, millis};
use crate::failure::{Failure, FailureKind};
use crate::task::{
    Beat, Completion, Enqueued, Lease, NewTask, Outcome, RetryPolicy, State, TaskId,
};

pub(super) fn enqueue(
    tx: &Transaction<'_>,
    tasks: &[NewTask],
    now: Millis,
) -> rusqlite::Result<Vec<Enqueued>> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO tasks (queue, state, priority, ready_at, payload, idem_key, max_retries,
                            backoff_ms, max_backoff_ms, crash_budget, time_limit_ms,
                            result_ttl_ms, enqueued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (idem_key) DO NOTHING
         RETURNING id",
    )?;
    let mut existing = tx.prepare_cached("SELECT id FROM tasks WHERE idem_key = ?1")?;
    let mut done = Vec::with_capacity(tasks.len());
    let mut tally = Tally::default();
    for task in tasks {
        let retry = &task.retry;
        let inserted: Option<i64> = insert
            .query_row(
                params![
                    task.queue,
                    QUEUED,
                    task.priority,
                    task.ready_at(now),
                    task.payload,
                    task.key,
                    retry.max_retries,
                    millis(retry.backoff),
                    millis(retry.max_backoff),
                    retry.crash_budget.max(1),
                    task.time_limit.map(millis),
                    millis(task.result_ttl),
                    now,
                ],
                |row| row.get(0),
            )
            .optional()?;
        let (id, created) = match inserted {
            Some(id) => {
                tally.add(&task.queue, QUEUED, 1);
                (id, true)
            }
            // The key is held: the first task stands.
            None => (existing.query_row([&task.key], |row| row.get(0))?, false),
        };
        done.push(Enqueued {
            id: task_id(id),
            created,
        });
    }
    tally.write(tx)?;
    Ok(done)
}

pub(super) fn reserve(
    tx: &Transaction<'_>,
    worker: &str,
    queues: &[&str],
    max: usize,
    lease: Duration,
    now: Millis,
) -> rusqlite::Result<Vec<Lease>> {
    // One statement per number of queues, cached.
    let placeholders = (0..queues.len())
        .map(|i| format!("?{}", i + 5))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE tasks
            SET state = ?1, attempt = attempt + 1, worker = ?2, lease_until = ?3,
                started_at = ?4, cancel_requested = 0
          WHERE id IN (SELECT id FROM tasks
                        WHERE state = 0 AND queue IN ({placeholders}) AND ready_at <= ?4
                        ORDER BY priority DESC, ready_at, id
                        LIMIT {max})
      RETURNING id, attempt, queue, payload, time_limit_ms, failures, crashes, priority,
                ready_at"
    );
    let mut update = tx.prepare_cached(&sql)?;
    let until = now.saturating_add(millis(lease));
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&RUNNING, &worker, &until, &now];
    values.extend(queues.iter().map(|q| q as &dyn rusqlite::ToSql));
    let mut rows = update.query(values.as_slice())?;
    let mut leases = Vec::new();
    let mut tally = Tally::default();
    while let Some(row) = rows.next()? {
        let limit: Option<i64> = row.get(4)?;
        let priority: i64 = row.get(7)?;
        let ready_at: i64 = row.get(8)?;
        let queue: String = row.get(2)?;
        tally.moved(&queue, QUEUED, RUNNING);
        leases.push((
            (-priority, ready_at, row.get::<_, i64>(0)?),
            Lease {
                id: task_id(row.get(0)?),
                attempt: row.get(1)?,
                queue,
                payload: row.get(3)?,
                time_limit: limit.map(duration),
                lease_until: until,
                failures: row.get(5)?,
                crashes: row.get(6)?,
            },
        ));
    }
    drop(rows);
    tally.write(tx)?;
    // RETURNING gives no order: hand them out in the order they were chosen.
    leases.sort_by_key(|(order, _)| *order);
    Ok(leases.into_iter().map(|(_, lease)| lease).collect())
}

/// Reclaims every lease that ran out: its attempt is charged to the crash budget (the
/// worker died or hung under it), and the task is queued again, or dead past the budget.
pub(super) fn reclaim(tx: &Transaction<'_>, now: Millis) -> rusqlite::Result<usize> {
    // Cheap when nothing ran out: the partial index holds only running tasks.
    let mut expired = tx.prepare_cached(
        "SELECT id, attempt, worker, crashes, crash_budget, queue FROM tasks
          WHERE state = 1 AND lease_until < ?1",
    )?;
    let found: Vec<(i64, u32, Option<String>, u32, u32, String)> = expired
        .query_map([now], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut tally = Tally::default();
    for (id, attempt, worker, crashes, budget, queue) in &found {
        let worker = worker.as_deref().unwrap_or("?");
        let failure = Failure::new(
            FailureKind::LeaseExpired,
            format!(
                "worker {worker} stopped renewing its lease on attempt {attempt} (it died, or \
                 hung)"
            ),
        );
        let state = crash(tx, *id, *attempt, *crashes, *budget, &failure, now)?;
        tally.moved(queue, RUNNING, stored(state));
    }
    tally.write(tx)?;
    Ok(found.len())
}

/// Charges attempt `attempt` of task `id` to its crash budget: queued again, or dead.
fn crash(
    tx: &Transaction<'_>,
    id: i64,
    attempt: u32,
    crashes: u32,
    budget: u32,
    failure: &Failure,
    now: Millis,
) -> rusqlite::Result<State> {
    let crashes = crashes + 1;
    let error = to_json(failure);
    if crashes < budget {
        tx.prepare_cached(
            "UPDATE tasks SET state = ?1, crashes = ?2, ready_at = ?3, lease_until = NULL,
                              error = ?4
              WHERE id = ?5 AND attempt = ?6",
        )?
        .execute(params![QUEUED, crashes, now, error, id, attempt])?;
        Ok(State::Queued)
    } else {
        let reason = format!(
            "its attempts crashed {} (crash budget {budget}); the last: {failure}",
            crate::failure::times(crashes)
        );
        bury(tx, id, attempt, Some(crashes), &error, &reason, now)?;
        Ok(State::Dead)
    }
}

/// Moves attempt `attempt` of task `id` to the dead letters with its reason.
fn bury(
    tx: &Transaction<'_>,
    id: i64,
    attempt: u32,
    crashes: Option<u32>,
    error: &str,
    reason: &str,
    now: Millis,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE tasks SET state = ?1, crashes = coalesce(?2, crashes), lease_until = NULL,
                          finished_at = ?3, error = ?4, reason = ?5
          WHERE id = ?6 AND attempt = ?7",
    )?
    .execute(params![DEAD, crashes, now, error, reason, id, attempt])?;
    Ok(())
}

pub(super) fn heartbeat(
    tx: &Transaction<'_>,
    attempts: &[(TaskId, u32)],
    lease: Duration,
    now: Millis,
) -> rusqlite::Result<Vec<Beat>> {
    let mut renew = tx.prepare_cached(
        "UPDATE tasks SET lease_until = ?1 WHERE id = ?2 AND attempt = ?3 AND state = 1
         RETURNING cancel_requested",
    )?;
    let until = now.saturating_add(millis(lease));
    let mut beats = Vec::with_capacity(attempts.len());
    for (id, attempt) in attempts {
        let cancel: Option<bool> = renew
            .query_row(params![until, id_value(*id), attempt], |row| row.get(0))
            .optional()?;
        beats.push(match cancel {
            None => Beat::Lost,
            Some(true) => Beat::CancelRequested,
            Some(false) => Beat::Renewed,
        });
    }
    Ok(beats)
}

/// What a completion needs to know of the task's current attempt.
struct Current {
    queue: String,
    failures: u32,
    crashes: u32,
    retry: RetryPolicy,
    result_ttl_ms: i64,
}

pub(super) fn complete(
    tx: &Transaction<'_>,
    ended: &[(TaskId, u32, Outcome)],
    now: Millis,
) -> rusqlite::Result<Vec<Completion>> {
    let mut current = tx.prepare_cached(
        "SELECT failures, crashes, max_retries, backoff_ms, max_backoff_ms, crash_budget,
                result_ttl_ms, queue
           FROM tasks WHERE id = ?1 AND attempt = ?2 AND state = 1",
    )?;
    let mut completions = Vec::with_capacity(ended.len());
    let mut tally = Tally::default();
    for (id, attempt, outcome) in ended {
        let found = current
            .query_row(params![id_value(*id), attempt], |row| {
                Ok(Current {
                    failures: row.get(0)?,
                    crashes: row.get(1)?,
                    retry: RetryPolicy {
                        max_retries: row.get(2)?,
                        backoff: duration(row.get(3)?),
                        max_backoff: duration(row.get(4)?),
                        crash_budget: row.get(5)?,
                    },
                    result_ttl_ms: row.get(6)?,
                    queue: row.get(7)?,
                })
            })
            .optional()?;
        let Some(task) = found else {
            completions.push(Completion::Fenced);
            continue;
        };
        let state = record(tx, *id, *attempt, outcome, &task, now)?;
        tally.moved(&task.queue, RUNNING, stored(state));
        completions.push(Completion::Recorded(state));
    }
    tally.write(tx)?;
    Ok(completions)
}

/// Records one attempt's outcome; the task's new state.
fn record(
    tx: &Transaction<'_>,
    id: TaskId,
    attempt: u32,
    outcome: &Outcome,
    task: &Current,
    now: Millis,
) -> rusqlite::Result<State> {
    let row = id_value(id);
    let expires = now.saturating_add(task.result_ttl_ms);
    match outcome {
        Outcome::Succeeded(result) => {
            tx.prepare_cached(
                "UPDATE tasks SET state = ?1, result = ?2, lease_until = NULL, finished_at = ?3,
                                  expires_at = ?4
                  WHERE id = ?5 AND attempt = ?6",
            )?
            .execute(params![SUCCEEDED, result, now, expires, row, attempt])?;
            Ok(State::Succeeded)
        }
        Outcome::Failed { failure, retry } => {
            let failures = task.failures + 1;
            let error = to_json(failure);
            if *retry && failures <= task.retry.max_retries {
                let wait = task.retry.backoff_before(id, failures);
                tx.prepare_cached(
                    "UPDATE tasks SET state = ?1, failures = ?2, ready_at = ?3,
                                      lease_until = NULL, error = ?4
                      WHERE id = ?5 AND attempt = ?6",
                )?
                .execute(params![
                    QUEUED,
                    failures,
                    now.saturating_add(millis(wait)),
                    error,
                    row,
                    attempt
                ])?;
                return Ok(State::Queued);
            }
            let reason = if *retry {
                format!(
                    "it failed {} ({} retries allowed); the last: {failure}",
                    crate::failure::times(failures),
                    task.retry.max_retries
                )
            } else {
                format!("it failed, and the failure is not retried: {failure}")
            };
            tx.prepare_cached("UPDATE tasks SET failures = ?1 WHERE id = ?2")?
                .execute(params![failures, row])?;
            bury(tx, row, attempt, None, &error, &reason, now)?;
            Ok(State::Dead)
        }
        Outcome::Crashed(failure) => crash(
            tx,
            row,
            attempt,
            task.crashes,
            task.retry.crash_budget,
            failure,
            now,
        ),
        Outcome::Rejected(failure) => {
            let reason = format!("no worker can run it: {failure}");
            bury(tx, row, attempt, None, &to_json(failure), &reason, now)?;
            Ok(State::Dead)
        }
        Outcome::Released | Outcome::Deferred(_) => {
            let wait = match outcome {
                Outcome::Deferred(wait) => millis(*wait),
                _ => 0,
            };
            tx.prepare_cached(
                "UPDATE tasks SET state = ?1, ready_at = ?2, lease_until = NULL
                  WHERE id = ?3 AND attempt = ?4",
            )?
            .execute(params![QUEUED, now.saturating_add(wait), row, attempt])?;
            Ok(State::Queued)
        }
        Outcome::Cancelled => {
            let failure = Failure::new(FailureKind::Cancelled, "cancelled while it ran");
            tx.prepare_cached(
                "UPDATE tasks SET state = ?1, lease_until = NULL, finished_at = ?2,
                                  expires_at = ?3, error = ?4, reason = 'cancelled while it ran'
                  WHERE id = ?5 AND attempt = ?6",
            )?
            .execute(params![
                CANCELLED,
                now,
                expires,
                to_json(&failure),
                row,
                attempt
            ])?;
            Ok(State::Cancelled)
        }
    }
}

pub(super) fn to_json(failure: &Failure) -> String {
    serde_json::to_string(failure).unwrap_or_default()
}

pub(super) fn task_id(row: i64) -> TaskId {
    TaskId::new(u64::try_from(row).unwrap_or(0))
}

pub(super) fn id_value(id: TaskId) -> i64 {
    i64::try_from(id.get()).unwrap_or(i64::MAX)
}

pub(super) fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
