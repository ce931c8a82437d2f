//! [`SqliteStore`]: the embedded store, one SQLite file that several worker processes on
//! one machine share.
//!
//! The file is in WAL mode: readers never wait for the writer, and a commit is one append
//! to the log. Writes take the file's write lock for one short transaction each (an
//! enqueue, a reservation of several tasks, a batch of completions), so processes take
//! turns rather than conflict. What a commit promises depends on [`Durability`].

mod admin;
mod counts;
mod lifecycle;
mod registry;
mod schema;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::clock::{Clock, Millis, SystemClock};
use crate::error::{QueueError, Result};
use crate::registry::WorkerInfo;
use crate::store::Store;
use crate::task::{
    Beat, Cancel, Completion, Enqueued, Lease, NewTask, Outcome, QueueStats, TaskId, TaskInfo,
};
use watch::{Bell, Listener};

/// Prepared statements a store's connection keeps: more than the store has (about 30,
/// counting `reserve`'s one per number of queues), so that none is compiled twice.
const STATEMENTS: usize = 128;

/// The largest payload a store takes by default: 1 MiB.
pub const DEFAULT_PAYLOAD_LIMIT: usize = 1 << 20;

/// What an acknowledged write survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The default: a write that returned survives the death of every process (kill -9
    /// included), but the last commits before a power loss or an OS crash may be lost.
    /// (SQLite's `synchronous = NORMAL` in WAL mode: the log is synced at checkpoints.)
    #[default]
    Process,
    /// Every commit is synced to the disk before it returns: a write that returned
    /// survives a power loss too, at the cost of an `fsync` per transaction (see
    /// BENCHMARKS.md). (`synchronous = FULL`.)
    Fsync,
}

/// The embedded store: a SQLite file.
///
/// # Examples
///
/// ```
/// use plait_queue::{NewTask, Payload, SqliteStore, Store};
///
/// let folder = std::env::temp_dir().join(format!("plait-doc-{}", std::process::id()));
/// let store = SqliteStore::open(folder.join("queue.db"))?;
/// let task = store.enqueue(&NewTask::new(Payload::command(["true"]).encode()))?;
/// let leases = store.reserve("worker-1", &["default"], 10, std::time::Duration::from_secs(30))?;
/// assert_eq!(leases[0].id, task.id);
/// # std::fs::remove_dir_all(folder).ok();
/// # Ok::<(), plait_queue::QueueError>(())
/// ```
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    payload_limit: usize,
    result_limit: usize,
    busy_timeout: Duration,
    bell: Bell,
    /// Started on the first wait.
    listener: OnceLock<Listener>,
    look_every: Duration,
}

/// Builds a [`SqliteStore`]: see [`SqliteStore::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct SqliteBuilder {
    path: PathBuf,
    durability: Durability,
    clock: Arc<dyn Clock>,
    payload_limit: usize,
    result_limit: usize,
    busy_timeout: Duration,
    look_every: Duration,
}

impl SqliteBuilder {
    /// What an acknowledged write survives (default [`Durability::Process`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The clock leases, delays and expiries are kept by (default the machine's); every
    /// process that shares the file must use the same.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The largest payload taken (default [`DEFAULT_PAYLOAD_LIMIT`], 1 MiB).
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.payload_limit = bytes;
        self
    }

    /// The largest result kept (default [`DEFAULT_RESULT_LIMIT`](crate::DEFAULT_RESULT_LIMIT),
    /// 8 MiB); a larger one fails its task, saying so.
    pub fn result_limit(mut self, bytes: usize) -> Self {
        self.result_limit = bytes;
        self
    }

    /// How long a write waits for another process's transaction before it fails with
    /// [`QueueError::Locked`] (default 10 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long a waiter ([`wait_finished`](Store::wait_finished),
    /// [`wait_for_work`](Store::wait_for_work)) sleeps at most between looks (default
    /// 1 s). Waiters are woken by every commit; this bounds the wait only when a wake-up
    /// is missed (a writer killed between its commit and its wake-up call).
    pub fn look_every(mut self, period: Duration) -> Self {
        self.look_every = period;
        self
    }

    /// Opens the file, creating it (and its folder) if it does not exist.
    ///
    /// # Errors
    ///
    /// The folder cannot be made; the file is another program's database, a newer
    /// plait's queue, or damaged; or SQLite cannot open it.
    pub fn build(self) -> Result<SqliteStore> {
        let path = self.path;
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|error| QueueError::Storage {
                path: path.clone(),
                detail: format!("cannot make its folder {}: {error}", folder.display()),
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(&path, flags).map_err(|e| storage_error(&path, &e, 0))?;
        // Room for every statement the store prepares (rusqlite keeps 16 by default): a
        // statement pushed out is compiled again when next used.
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        let started = Instant::now();
        let waited = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        conn.busy_timeout(self.busy_timeout)
            .map_err(|e| storage_error(&path, &e, waited()))?;
        let synchronous = match self.durability {
            Durability::Process => "NORMAL",
            Durability::Fsync => "FULL",
        };
        // Processes that open a new file at once (workers started together) race to switch
        // it to WAL and make its tables; SQLite answers the loser "busy" at once, without
        // its busy handler, so the set-up is tried again until the busy timeout.
        let found = loop {
            let set_up = conn
                .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .and_then(|()| conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};")))
                .and_then(|()| schema::prepare(&mut conn));
            match set_up {
                Ok(found) => break found,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) && started.elapsed() < self.busy_timeout =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(storage_error(&path, &e, waited())),
            }
        };
        match found {
            schema::Found::Ready => {}
            schema::Found::Foreign => {
                return Err(QueueError::Corrupt {
                    path,
                    detail: "it is another program's SQLite database".to_owned(),
                });
            }
            schema::Found::Newer(found) => {
                return Err(QueueError::SchemaTooNew {
                    path,
                    found,
                    supported: schema::SCHEMA_VERSION,
                });
            }
        }
        Ok(SqliteStore {
            bell: Bell::open(&path),
            listener: OnceLock::new(),
            look_every: self.look_every,
            path,
            conn: Mutex::new(conn),
            clock: self.clock,
            payload_limit: self.payload_limit,
            result_limit: self.result_limit,
            busy_timeout: self.busy_timeout,
        })
    }
}

impl SqliteStore {
    /// Opens (or creates) the queue in the file at `path`, with the defaults.
    ///
    /// # Errors
    ///
    /// As [`SqliteBuilder::build`].
    pub fn open(path: impl Into<PathBuf>) -> Result<SqliteStore> {
        SqliteStore::builder(path).build()
    }

    /// A builder for the queue in the file at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> SqliteBuilder {
        SqliteBuilder {
            path: path.into(),
            durability: Durability::default(),
            clock: Arc::new(SystemClock),
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            result_limit: crate::store::DEFAULT_RESULT_LIMIT,
            busy_timeout: Duration::from_secs(10),
            look_every: Duration::from_secs(1),
        }
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held left no transaction open (its guard rolled it
        // back), so the connection is usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one write transaction, committed if it returns `Ok`, then rings the
    /// bell: the tasks changed.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let value = self.write_quietly(f)?;
        self.bell.ring();
        Ok(value)
    }

    /// As [`write`](Self::write), without the bell: for writes that no waiter waits on
    /// (the worker registry's).
    fn write_quietly<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut conn = self.conn();
        let run = || -> rusqlite::Result<T> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|e| self.error(&e, started))
    }

    /// Runs `f` on the connection (reads see one snapshot per statement).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let started = Instant::now();
        let conn = self.conn();
        f(&conn).map_err(|e| self.error(&e, started))
    }

    fn error(&self, error: &rusqlite::Error, started: Instant) -> QueueError {
        let waited = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        storage_error(&self.path, error, waited.max(self.busy_millis()))
    }

    fn listener(&self) -> &Listener {
        self.listener.get_or_init(|| Listener::start(&self.path))
    }

    fn busy_millis(&self) -> u64 {
        u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A SQLite error as a [`QueueError`] that names the file.
fn storage_error(path: &Path, error: &rusqlite::Error, waited_ms: u64) -> QueueError {
    let path = path.to_owned();
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            QueueError::Locked { path, waited_ms }
        }
        Some(ErrorCode::DiskFull) => QueueError::DiskFull { path },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => QueueError::Corrupt {
            path,
            detail: error.to_string(),
        },
        _ => QueueError::Storage {
            path,
            detail: error.to_string(),
        },
    }
}

impl Store for SqliteStore {
    fn enqueue_all(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>> {
        crate::store::check_new_tasks(tasks, self.payload_limit)?;
        let now = self.now();
        self.write(|tx| lifecycle::enqueue(tx, tasks, now))
    }

    fn reserve(
        &self,
        worker: &str,
        queues: &[&str],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>> {
        if queues.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.write(|tx| {
            lifecycle::reclaim(tx, now)?;
            lifecycle::reserve(tx, worker, queues, max, lease, now)
        })
    }

    fn heartbeat(&self, attempts: &[(TaskId, u32)], lease: Duration) -> Result<Vec<Beat>> {
        let now = self.now();
        self.write(|tx| lifecycle::heartbeat(tx, attempts, lease, now))
    }

    fn complete(&self, ended: &[(TaskId, u32, Outcome)]) -> Result<Vec<Completion>> {
        let now = self.now();
        let ended = crate::store::cap_results(ended, self.result_limit);
        self.write(|tx| lifecycle::complete(tx, &ended, now))
    }

    fn reclaim_expired(&self) -> Result<usize> {
        let now = self.now();
        self.write(|tx| lifecycle::reclaim(tx, now))
    }

    fn cancel(&self, id: TaskId) -> Result<Cancel> {
        let now = self.now();
        self.write(|tx| admin::cancel(tx, id, now))?
            .ok_or(QueueError::NotFound { id: id.get() })
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        self.read(|conn| admin::get(conn, id))
    }

    fn wait_finished(&self, id: TaskId, timeout: Duration) -> Result<TaskInfo> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.listener().rings();
            let task = self.get(id)?.ok_or(QueueError::NotFound { id: id.get() })?;
            let left = deadline.saturating_duration_since(Instant::now());
            if task.state.is_finished() || left.is_zero() {
                return Ok(task);
            }
            self.listener().wait(seen, left.min(self.look_every));
        }
    }

    fn wait_for_work(&self, queues: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let seen = self.listener().rings();
        let now = self.now();
        let next = self.read(|conn| admin::next_ready(conn, queues))?;
        let wait = match next {
            Some(at) if at <= now => return Ok(()),
            // Wake for the earliest delayed task too.
            Some(at) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)),
            None => timeout,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        self.listener()
            .wait(seen, wait.min(left).min(self.look_every));
        Ok(())
    }

    fn queues(&self) -> Result<Vec<QueueStats>> {
        let now = self.now();
        self.read(|conn| admin::queues(conn, now))
    }

    fn dead(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
        self.read(|conn| admin::dead(conn, queue, limit))
    }

    fn running(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
        self.read(|conn| admin::running(conn, queue, limit))
    }

    fn retrying(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
        self.read(|conn| admin::retrying(conn, queue, limit))
    }

    fn requeue_dead(&self, ids: Option<&[TaskId]>) -> Result<usize> {
        let now = self.now();
        self.write(|tx| admin::requeue_dead(tx, ids, now))
    }

    fn purge(&self, queue: Option<&str>) -> Result<usize> {
        self.write(|tx| admin::purge(tx, queue))
    }

    fn expire_results(&self) -> Result<usize> {
        let now = self.now();
        self.write(|tx| admin::expire(tx, now))
    }

    fn worker_seen(&self, worker: &WorkerInfo) -> Result<()> {
        let now = self.now();
        self.write_quietly(|tx| registry::seen(tx, worker, now))
    }

    fn worker_stopped(&self, worker: &WorkerInfo) -> Result<()> {
        let now = self.now();
        self.write_quietly(|tx| registry::stopped(tx, worker, now))
    }

    fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.read(registry::list)
    }

    fn take_token(&self, name: &str, limit: crate::RateLimit) -> Result<Option<Duration>> {
        let now = self.now();
        self.write_quietly(|tx| registry::take_token(tx, name, limit, now))
    }

    fn now(&self) -> Millis {
        self.clock.now()
    }
}
