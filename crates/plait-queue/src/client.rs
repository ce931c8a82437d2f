//! [`Client`]: submitting typed tasks and reading their results, the way Celery's
//! `task.delay(…)`, `apply_async(…)`, `AsyncResult.get(…)` and `revoke()` do.
//!
//! | Celery (Python)                              | plait                                            |
//! |----------------------------------------------|--------------------------------------------------|
//! | `add.delay(2, 3)`                            | `client.delay(add::task(), (2, 3))?`             |
//! | `add.apply_async((2, 3), countdown=60, queue="math", priority=5)` | `client.submit(add::task(), (2, 3)).countdown(secs(60)).queue("math").priority(5).send()?` |
//! | `add.apply_async((2, 3), eta=when)`          | `client.submit(add::task(), (2, 3)).eta(when).send()?` |
//! | `AsyncResult(id).get(timeout=10)`            | `client.result::<i64>(id).get(secs(10))?`        |
//! | `result.state`, `result.ready()`             | `result.info()?.state`, `….state.is_finished()`  |
//! | `result.revoke(terminate=True)`              | `result.cancel()?` (running tasks are stopped)   |
//! | `task_id=` to deduplicate                    | `.key("…")`: the same key returns the first id   |

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use plait::process::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::QueueError;
use crate::failure::Failure;
use crate::payload::Payload;
use crate::store::Store;
use crate::task::{Cancel, NewTask, RetryPolicy, State, TaskId, TaskInfo};

/// Submits tasks to a [`Store`] and hands back typed handles to their results.
///
/// Cheap to clone: clones share the store.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use plait_queue::{Client, SqliteStore};
///
/// #[plait::task(name = "math.add")]
/// fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// let folder = std::env::temp_dir().join(format!("plait-client-doc-{}", std::process::id()));
/// let client = Client::new(Arc::new(SqliteStore::open(folder.join("queue.db"))?));
///
/// // add.delay(2, 3): stored now, run by any worker whose binary registers `math.add`.
/// let sum = client.delay(add::task(), (2, 3))?;
/// assert!(!sum.info()?.state.is_finished());
///
/// // add.apply_async((2, 3), countdown=60, queue="math")
/// let later = client
///     .submit(add::task(), (2, 3))
///     .countdown(Duration::from_secs(60))
///     .queue("math")
///     .send()?;
/// later.cancel()?; // revoke()
/// # std::fs::remove_dir_all(folder).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
}

impl Client {
    /// A client of `store`.
    pub fn new(store: Arc<dyn Store>) -> Client {
        Client { store }
    }

    /// The store it submits to.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Submits `task` with `args`, with the defaults (queue `default`, priority 0, now):
    /// Celery's `task.delay(args)`.
    ///
    /// # Errors
    ///
    /// As [`Submit::send`].
    pub fn delay<T: Task>(
        &self,
        task: T,
        args: T::Args,
    ) -> Result<AsyncResult<T::Output>, SubmitError> {
        self.submit(task, args).send()
    }

    /// A submission of `task` with `args`, to set options on and then
    /// [`send`](Submit::send): Celery's `task.apply_async(args, …)`.
    pub fn submit<T: Task>(&self, task: T, args: T::Args) -> Submit<'_, T::Output> {
        let _ = task;
        Submit::new(self, Payload::task(T::NAME, T::VERSION, &args))
    }

    /// A submission of a command (`argv[0]` and its arguments), run by any worker; its
    /// result is a [`CommandResult`].
    pub fn command<I, S>(&self, argv: I) -> Submit<'_, CommandResult>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Submit::new(self, Ok(Payload::command(argv)))
    }

    /// A handle to task `id`'s result, read as `O`: Celery's `AsyncResult(id)`. Nothing
    /// is checked until it is used.
    #[must_use]
    pub fn result<O: DeserializeOwned>(&self, id: TaskId) -> AsyncResult<O> {
        AsyncResult {
            id,
            store: Arc::clone(&self.store),
            output: PhantomData,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// A task about to be submitted, with its options: made by [`Client::submit`] or
/// [`Client::command`], sent with [`send`](Submit::send).
#[must_use = "a submission does nothing until it is sent"]
pub struct Submit<'a, O> {
    client: &'a Client,
    /// The payload, or why the arguments could not be written.
    payload: Result<Payload, serde_json::Error>,
    task: NewTask,
    output: PhantomData<fn() -> O>,
}

impl<'a, O> Submit<'a, O> {
    fn new(client: &'a Client, payload: Result<Payload, serde_json::Error>) -> Self {
        Submit {
            client,
            payload,
            task: NewTask::new(Vec::new()),
            output: PhantomData,
        }
    }

    /// The queue to put it on (`queue=`).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.task = self.task.queue(name);
        self
    }

    /// Not to run before `at` (`eta=`). However far off, it runs once.
    pub fn eta(mut self, at: SystemTime) -> Self {
        self.task = self.task.eta(at);
        self
    }

    /// Not to run before `delay` has passed (`countdown=`).
    pub fn countdown(mut self, delay: Duration) -> Self {
        self.task = self.task.countdown(delay);
        self
    }

    /// Its priority: higher runs first (`priority=`).
    pub fn priority(mut self, priority: i32) -> Self {
        self.task = self.task.priority(priority);
        self
    }

    /// An idempotency key: sending again with a key the store still holds returns the
    /// first task's handle and stores nothing.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.task = self.task.key(key);
        self
    }

    /// How failures are retried (`retry_policy=`, `max_retries=`).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.task = self.task.retry(policy);
        self
    }

    /// A hard limit on each attempt (`time_limit=`).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.task = self.task.time_limit(limit);
        self
    }

    /// How long its result is kept once it has finished (`result_expires=`).
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.task = self.task.result_ttl(ttl);
        self
    }

    /// Stores the task, and returns the handle to its result.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Args`] when the arguments cannot be written as JSON;
    /// [`SubmitError::Store`] when the store refused the task (a bad queue name or key, a
    /// payload over the limit) or could not store it. Either way nothing was stored.
    pub fn send(self) -> Result<AsyncResult<O>, SubmitError> {
        let payload = self.payload.map_err(|error| SubmitError::Args {
            detail: error.to_string(),
        })?;
        let mut task = self.task;
        task.payload = payload.encode();
        let enqueued = self.client.store.enqueue(&task)?;
        Ok(AsyncResult {
            id: enqueued.id,
            store: Arc::clone(&self.client.store),
            output: PhantomData,
        })
    }
}

/// Why a submission was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The task's arguments could not be written as JSON (a map with keys that are not
    /// strings, say).
    #[error(
        "the task's arguments cannot be written as JSON ({detail}); use types that serde writes as JSON"
    )]
    Args {
        /// What serde said.
        detail: String,
    },
    /// The store refused the task or could not store it.
    #[error(transparent)]
    Store(#[from] QueueError),
}

/// The handle to a submitted task's result, read as `O`: Celery's `AsyncResult`.
///
/// It holds only the id and the store: it may be dropped and made again from the id
/// ([`Client::result`]) in any process.
pub struct AsyncResult<O> {
    id: TaskId,
    store: Arc<dyn Store>,
    output: PhantomData<fn() -> O>,
}

impl<O> AsyncResult<O> {
    /// The task's id.
    #[must_use]
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task as stored now: its state, attempts, errors.
    ///
    /// # Errors
    ///
    /// [`QueueError::NotFound`] when no task has this id (or its result expired); a
    /// storage failure.
    pub fn info(&self) -> Result<TaskInfo, QueueError> {
        self.store
            .get(self.id)?
            .ok_or(QueueError::NotFound { id: self.id.get() })
    }

    /// Cancels it: a waiting task never runs; a running one is stopped by its worker at
    /// its next heartbeat (Celery's `revoke(terminate=True)`).
    ///
    /// # Errors
    ///
    /// As [`info`](AsyncResult::info).
    pub fn cancel(&self) -> Result<Cancel, QueueError> {
        self.store.cancel(self.id)
    }
}

impl<O: DeserializeOwned> AsyncResult<O> {
    /// Waits up to `timeout` for the task to finish (woken by the store, not by polling),
    /// and returns its result: Celery's `get(timeout=…)`.
    ///
    /// # Errors
    ///
    /// [`ResultError::NotReady`] when it has not finished within `timeout` (it goes on);
    /// [`ResultError::Dead`] when it failed past its retries or crash budget, or was
    /// refused; [`ResultError::Cancelled`]; [`ResultError::Undecodable`] when the result
    /// is not an `O`; [`ResultError::Store`] for a missing task or a storage failure.
    pub fn get(&self, timeout: Duration) -> Result<O, ResultError> {
        let task = self.store.wait_finished(self.id, timeout)?;
        match task.state {
            State::Succeeded => {
                let bytes = task.result.unwrap_or_default();
                serde_json::from_slice(&bytes).map_err(|error| ResultError::Undecodable {
                    id: self.id,
                    detail: error.to_string(),
                })
            }
            State::Dead => Err(ResultError::Dead {
                id: self.id,
                reason: task.reason.unwrap_or_default(),
                error: task.error,
            }),
            State::Cancelled => Err(ResultError::Cancelled { id: self.id }),
            state => Err(ResultError::NotReady {
                id: self.id,
                state,
                waited: timeout,
            }),
        }
    }
}

impl<O> Clone for AsyncResult<O> {
    fn clone(&self) -> Self {
        AsyncResult {
            id: self.id,
            store: Arc::clone(&self.store),
            output: PhantomData,
        }
    }
}

impl<O> std::fmt::Debug for AsyncResult<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("id", &self.id).finish()
    }
}

/// Why [`AsyncResult::get`] has no result to give.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// It has not finished yet; it goes on.
    #[error("task {id} is still {state} after {waited:?}; wait longer, or cancel it")]
    NotReady {
        /// The task.
        id: TaskId,
        /// Where it stands.
        state: State,
        /// How long the call waited.
        waited: Duration,
    },
    /// It is dead: failed past its retries, crashed past its crash budget, or refused.
    #[error("task {id} is dead: {reason}; `plait dead --requeue {id}` runs it again")]
    Dead {
        /// The task.
        id: TaskId,
        /// Why it is dead.
        reason: String,
        /// Its last failure, if it ran.
        error: Option<Failure>,
    },
    /// It was cancelled.
    #[error("task {id} was cancelled")]
    Cancelled {
        /// The task.
        id: TaskId,
    },
    /// It succeeded, but its result is not of the type asked for.
    #[error(
        "task {id}'s result cannot be read as the type asked for ({detail}); is it another task's id?"
    )]
    Undecodable {
        /// The task.
        id: TaskId,
        /// What serde said.
        detail: String,
    },
    /// No such task, or a storage failure.
    #[error(transparent)]
    Store(#[from] QueueError),
}

/// What a command submitted to the queue reports when it succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CommandResult {
    /// Its exit code.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// What it wrote to standard output (invalid UTF-8 replaced).
    pub stdout: String,
    /// What it wrote to standard error.
    pub stderr: String,
    /// How long it ran, in milliseconds.
    pub elapsed_ms: u64,
}
