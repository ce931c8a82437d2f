//! The embedded store's tables, and how a file is recognised as a queue database.

use rusqlite::Connection;

/// Marks a SQLite file as a plait queue (`PRAGMA application_id`): "plQ1".
pub(super) const APPLICATION_ID: i32 = 0x706c_5131;

/// The layout this build writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 4;

/// States as stored: small integers, so the ready index stays compact.
pub(super) const QUEUED: i64 = 0;
pub(super) const RUNNING: i64 = 1;
pub(super) const SUCCEEDED: i64 = 2;
pub(super) const DEAD: i64 = 3;
pub(super) const CANCELLED: i64 = 4;

/// Version 1. Ids are `AUTOINCREMENT`, so never reused, even after the newest task is
/// deleted: a worker's stale attempt can never name another task.
const SCHEMA_V1: &str = "
CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL,
    state            INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    ready_at         INTEGER NOT NULL,
    payload          BLOB    NOT NULL,
    idem_key         TEXT    UNIQUE,
    attempt          INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    crashes          INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    backoff_ms       INTEGER NOT NULL,
    max_backoff_ms   INTEGER NOT NULL,
    crash_budget     INTEGER NOT NULL,
    time_limit_ms    INTEGER,
    result_ttl_ms    INTEGER NOT NULL,
    worker           TEXT,
    lease_until      INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    enqueued_at      INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    expires_at       INTEGER,
    result           BLOB,
    error            TEXT,
    reason           TEXT
);
-- The tasks waiting on a queue, in the order they are handed out.
CREATE INDEX tasks_ready ON tasks (queue, priority DESC, ready_at, id) WHERE state = 0;
-- Leases, for reclaiming those that ran out.
CREATE INDEX tasks_leases ON tasks (lease_until) WHERE state = 1;
-- Results, for purging those that expired.
CREATE INDEX tasks_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
-- Dead letters, oldest first.
CREATE INDEX tasks_dead ON tasks (finished_at, id) WHERE state = 3;
";

/// Version 2 adds the worker registry, and the counts that let `plait status` answer at
/// once however long the queues: tasks by queue and state, kept in the same transactions
/// as the tasks (see `counts.rs`), and an index of the tasks that were given a later start (an
/// ETA, a countdown, a retry's backoff), from which the scheduled ones are counted.
const SCHEMA_V2: &str = "
CREATE TABLE workers (
    name        TEXT    PRIMARY KEY,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    queues      TEXT    NOT NULL,
    concurrency INTEGER NOT NULL,
    running     INTEGER NOT NULL,
    succeeded   INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL,
    stopped_at  INTEGER,
    lease_ms    INTEGER NOT NULL
);
CREATE TABLE counts (
    queue TEXT    NOT NULL,
    state INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, state)
) WITHOUT ROWID;
INSERT INTO counts SELECT queue, state, count(*) FROM tasks GROUP BY queue, state;
-- Waiting tasks given a later start than their enqueue: every scheduled task is here.
CREATE INDEX tasks_delayed ON tasks (queue, ready_at) WHERE state = 0 AND ready_at > enqueued_at;
";

/// Version 3 adds rate limits.
const SCHEMA_V3: &str = "
-- Rate limits: a token bucket per task name, shared by every worker on the file.
CREATE TABLE limits (
    name   TEXT    PRIMARY KEY,
    tokens REAL    NOT NULL,
    at     INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 4 keeps each worker's histogram of attempt durations (JSON), for `/metrics`.
const SCHEMA_V4: &str = "
ALTER TABLE workers ADD COLUMN durations TEXT NOT NULL DEFAULT '{}';
";

/// What [`prepare`] found.
pub(super) enum Found {
    /// The file holds a queue of this layout (or was empty, and now does).
    Ready,
    /// Another program's SQLite database.
    Foreign,
    /// A queue of a newer layout.
    Newer(i64),
}

/// Creates the tables in an empty database, or checks that the file is a queue this build
/// reads.
pub(super) fn prepare(conn: &mut Connection) -> rusqlite::Result<Found> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let application: i32 = tx.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if application == 0 && version == 0 {
        let tables: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )?;
        if tables != 0 {
            return Ok(Found::Foreign);
        }
        tx.execute_batch(SCHEMA_V1)?;
        tx.execute_batch(SCHEMA_V2)?;
        tx.execute_batch(SCHEMA_V3)?;
        tx.execute_batch(SCHEMA_V4)?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))?;
        tx.commit()?;
        return Ok(Found::Ready);
    }
    if application != APPLICATION_ID {
        return Ok(Found::Foreign);
    }
    if version > SCHEMA_VERSION {
        return Ok(Found::Newer(version));
    }
    // An older layout is brought up to date, in the same transaction: all or nothing.
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4)?;
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
        tx.commit()?;
    }
    Ok(Found::Ready)
}
