//! plait's durable task queue: work submitted now, done later by workers that may crash,
//! nothing lost.
//!
//! A [`Store`] keeps the tasks; the embedded [`SqliteStore`], one SQLite file, is the
//! default and needs no server. Tasks are handed to workers **at least once, under a
//! lease**: a worker renews its lease with heartbeats and ends each attempt with a
//! completion that names the attempt, so a worker that died is replaced and a worker that
//! comes back late is refused ([`Completion::Fenced`]). Failures are retried with backoff;
//! crashes are counted apart, against a crash budget; what cannot run goes to the dead
//! letters with its reason.
//!
//! # From Celery
//!
//! A [`Client`] submits tasks registered with `#[plait::task]` and hands back typed
//! [`AsyncResult`]s; a [`Worker`] in any binary that registers the same tasks (or
//! `plait worker`, for commands) runs them.
//!
//! | Celery (Python) | plait (Rust) |
//! |---|---|
//! | `add.delay(2, 3)` | `client.delay(add::task(), (2, 3))?` |
//! | `add.apply_async((2, 3), countdown=60, queue="math", priority=5)` | `client.submit(add::task(), (2, 3)).countdown(Duration::from_secs(60)).queue("math").priority(5).send()?` |
//! | `add.apply_async((2, 3), eta=when)` | `client.submit(add::task(), (2, 3)).eta(when).send()?` |
//! | `apply_async(…, task_id=…)` to deduplicate | `.key("…")`: the same key returns the first task's handle |
//! | `autoretry_for=…, max_retries=5, retry_backoff=True` | `.retry(RetryPolicy { max_retries: 5, ..Default::default() })` (backoff with jitter is the default) |
//! | `time_limit=600` | `.time_limit(Duration::from_secs(600))` |
//! | `AsyncResult(id).get(timeout=10)` | `client.result::<i64>(id).get(Duration::from_secs(10))?` |
//! | `result.state`, `result.ready()` | `result.info()?.state`, `result.info()?.state.is_finished()` |
//! | `result.revoke(terminate=True)` | `result.cancel()?` |
//! | `celery -A app worker -Q math -c 4` | `Worker::builder(store).queues(["math"]).concurrency(4).build()?.run()?`, or `plait worker` |
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use plait_queue::{Client, ResultError, SqliteStore};
//!
//! #[plait::task(name = "math.add")]
//! fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! let folder = std::env::temp_dir().join(format!("plait-celery-doc-{}", std::process::id()));
//! let client = Client::new(Arc::new(SqliteStore::open(folder.join("queue.db"))?));
//!
//! let sum = client.delay(add::task(), (2, 3))?; // add.delay(2, 3)
//! let later = client
//!     .submit(add::task(), (4, 5)) // add.apply_async((4, 5), countdown=3600, queue="math")
//!     .countdown(Duration::from_secs(3600))
//!     .queue("math")
//!     .send()?;
//!
//! // No worker runs here, so get(timeout) times out; the task goes on waiting.
//! match sum.get(Duration::from_millis(10)) {
//!     Err(ResultError::NotReady { .. }) => {}
//!     other => panic!("{other:?}"),
//! }
//! later.cancel()?; // revoke()
//! # std::fs::remove_dir_all(folder).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Retries live in one layer
//!
//! A queued task is retried by the queue alone: failures against its [`RetryPolicy`]
//! (with backoff), worker deaths against its crash budget. A [`Worker`] runs each attempt
//! once: the process strand under it has no crash retries of its own (`crash_retries(0)`),
//! so a crash reaches the queue, which counts it. A graph run through the queue hands its
//! tasks' retries to the queue in the same way, rather than retrying on both layers.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use plait_queue::{Completion, NewTask, Outcome, Payload, SqliteStore, State, Store};
//!
//! let folder = std::env::temp_dir().join(format!("plait-queue-doc-{}", std::process::id()));
//! let store = SqliteStore::open(folder.join("queue.db"))?;
//!
//! // Submit: the id is the handle, in this process or any other.
//! let id = store.enqueue(&NewTask::new(Payload::command(["echo", "hi"]).encode()))?.id;
//!
//! // A worker reserves it, runs it, and reports.
//! let lease = store.reserve("worker-1", &["default"], 1, Duration::from_secs(30))?.remove(0);
//! let done = store.complete(&[(lease.id, lease.attempt, Outcome::Succeeded(b"hi\n".to_vec()))])?;
//! assert_eq!(done, [Completion::Recorded(State::Succeeded)]);
//!
//! // Anyone fetches the result by id.
//! let task = store.wait_finished(id, Duration::from_secs(5))?;
//! assert_eq!(task.result.as_deref(), Some(&b"hi\n"[..]));
//! # std::fs::remove_dir_all(folder).ok();
//! # Ok::<(), plait_queue::QueueError>(())
//! ```

#![warn(missing_docs)]

mod client;
mod clock;
mod error;
mod failure;
mod graph;
mod payload;
pub mod periodic;
mod rate;
mod redis_store;
mod registry;
mod sqlite;
mod store;
mod task;
mod worker;

pub use client::{AsyncResult, Client, CommandResult, ResultError, Submit, SubmitError};
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::{ErrorKind, QueueError, Result};
pub use failure::{Failure, FailureKind};
pub use graph::{QueueExecutor, QueueExecutorBuilder};
pub use payload::{PAYLOAD_FORMAT, Payload};
pub use periodic::{Schedule, ScheduleError, Ticker};
pub use rate::RateLimit;
pub use redis_store::{RedisBuilder, RedisStore, redacted_url};
pub use registry::{Durations, WorkerInfo, WorkerState};
pub use sqlite::{DEFAULT_PAYLOAD_LIMIT, Durability, SqliteBuilder, SqliteStore};
pub use store::{DEFAULT_RESULT_LIMIT, Store, check_queue_name};
pub use task::{
    Beat, Cancel, Completion, DEFAULT_RESULT_TTL, Enqueued, Lease, NewTask, Outcome, QueueStats,
    RetryPolicy, Start, State, TaskId, TaskInfo,
};
pub use worker::{Stopper, Worker, WorkerBuilder, WorkerReport};
