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

mod clock;
mod error;
mod failure;
mod payload;
mod sqlite;
mod store;
mod task;
mod worker;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::{ErrorKind, QueueError, Result};
pub use failure::{Failure, FailureKind};
pub use payload::{PAYLOAD_FORMAT, Payload};
pub use sqlite::{DEFAULT_PAYLOAD_LIMIT, Durability, SqliteBuilder, SqliteStore};
pub use store::{Store, check_queue_name};
pub use task::{
    Beat, Cancel, Completion, DEFAULT_RESULT_TTL, Enqueued, Lease, NewTask, Outcome, QueueStats,
    RetryPolicy, Start, State, TaskId, TaskInfo,
};
pub use worker::{Stopper, Worker, WorkerBuilder, WorkerReport};
