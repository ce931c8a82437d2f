//! [`TaskGroup`]: tasks that succeed or fail together.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::task::as_completed::Indexed;
use crate::task::wait;
use crate::{BoxError, CancelHandle, Error, Handle, Result, Runtime, TaskId};

/// Tasks, on any strand, that succeed or fail together (Python's `asyncio.TaskGroup`, tokio's
/// `JoinSet`).
///
/// * The first task to fail (return `Err`, panic or time out) cancels all the others at once,
///   and [`join_all`](TaskGroup::join_all) returns that first error.
/// * If none fails, `join_all` returns every result, in the order the tasks were spawned.
/// * Dropping the group cancels every task still running: nothing outlives its owner.
///
/// # Examples
///
/// ```
/// let rt = plait::Runtime::new()?;
/// let mut group = rt.group();
/// for n in ["1", "2", "3"] {
///     group.spawn(move || n.parse::<u32>());
/// }
/// group.spawn_async(async { Ok::<_, std::num::ParseIntError>(4) });
/// assert_eq!(group.join_all()?, [1, 2, 3, 4]);
///
/// let mut group = rt.group();
/// group.spawn(|| "x".parse::<u32>());
/// group.spawn_async(async { std::future::pending::<Result<u32, std::num::ParseIntError>>().await });
/// let err = group.join_all().unwrap_err(); // the pending sibling was cancelled
/// assert!(err.to_string().contains("invalid digit"));
/// # Ok::<(), plait::Error>(())
/// ```
#[must_use = "dropping a TaskGroup cancels its tasks at once"]
pub struct TaskGroup<T> {
    rt: Runtime,
    tasks: Vec<Handle<Result<T>>>,
    shared: Arc<Shared>,
}

/// What the tasks of a group share: how to cancel each other, and the first failure.
#[derive(Default)]
struct Shared {
    cancels: Mutex<Vec<CancelHandle>>,
    first_error: Mutex<Option<Error>>,
}

impl Shared {
    /// Records a failure; the first one cancels the group.
    fn fail(&self, error: &Error) {
        {
            let mut first = lock(&self.first_error);
            if first.is_some() {
                return;
            }
            *first = Some(error.clone());
        }
        self.cancel_all();
    }

    fn cancel_all(&self) {
        for cancel in lock(&self.cancels).iter() {
            cancel.cancel();
        }
    }

    fn has_failed(&self) -> bool {
        lock(&self.first_error).is_some()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data is consistent after every statement; a panic elsewhere does not spoil it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Turns a task's own outcome into the group's terms, reporting a failure to the group.
fn settle<T, E: Into<BoxError>>(
    shared: &Shared,
    outcome: std::result::Result<std::result::Result<T, E>, Box<dyn std::any::Any + Send>>,
) -> Result<T> {
    let result = match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Error::failed(error)),
        Err(payload) => Err(Error::from_panic(payload)),
    };
    if let Err(error) = &result {
        shared.fail(error);
    }
    result
}

impl Runtime {
    /// Starts an empty [`TaskGroup`] on this runtime.
    pub fn group<T: Send + 'static>(&self) -> TaskGroup<T> {
        TaskGroup {
            rt: self.clone(),
            tasks: Vec::new(),
            shared: Arc::default(),
        }
    }
}

impl<T: Send + 'static> TaskGroup<T> {
    /// Spawns a fallible closure on the thread strand.
    pub fn spawn<F, E>(&mut self, f: F) -> TaskId
    where
        F: FnOnce() -> std::result::Result<T, E> + Send + 'static,
        E: Into<BoxError>,
    {
        let shared = Arc::clone(&self.shared);
        let handle = self
            .rt
            .spawn(move || settle(&shared, panic::catch_unwind(AssertUnwindSafe(f))));
        self.add(handle)
    }

    /// Spawns a fallible future on the coroutine strand.
    pub fn spawn_async<Fut, E>(&mut self, future: Fut) -> TaskId
    where
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let shared = Arc::clone(&self.shared);
        let handle = self.rt.spawn_async(async move {
            let outcome = AssertUnwindSafe(future).catch_unwind().await;
            settle(&shared, outcome)
        });
        self.add(handle)
    }

    fn add(&mut self, handle: Handle<Result<T>>) -> TaskId {
        let id = handle.id();
        lock(&self.shared.cancels).push(handle.cancel_handle());
        // A task that joins a group that has already failed is cancelled at once.
        if self.shared.has_failed() {
            handle.cancel();
        }
        self.tasks.push(handle);
        id
    }

    /// How many tasks were spawned in the group.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task was spawned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Cancels every task in the group.
    pub fn cancel_all(&self) {
        self.shared.cancel_all();
    }

    /// Waits for every task; returns all results in spawn order, or the first failure
    /// (after cancelling and waiting out the other tasks, so none is left running).
    ///
    /// Blocks the current thread; safe anywhere (see [`Handle::join`]). In async code use
    /// [`join_all_async`](TaskGroup::join_all_async).
    ///
    /// # Errors
    ///
    /// The first task's error in the order they failed: [`Error::Failed`] with the task's own
    /// error, [`Error::Panicked`], [`Error::TimedOut`]; or [`Error::Cancelled`] if the group
    /// was cancelled from outside.
    pub fn join_all(self) -> Result<Vec<T>> {
        wait::blocking_region(|| wait::block_on_tasks(self.join_all_async(), None))
            .unwrap_or_else(|| unreachable!("a wait without deadline never times out"))
    }

    /// [`join_all`](TaskGroup::join_all) for async code.
    ///
    /// # Errors
    ///
    /// As [`join_all`](TaskGroup::join_all).
    pub async fn join_all_async(mut self) -> Result<Vec<T>> {
        let tasks = std::mem::take(&mut self.tasks);
        let mut results: Vec<Option<T>> =
            std::iter::repeat_with(|| None).take(tasks.len()).collect();
        let mut pending: FuturesUnordered<_> = tasks
            .into_iter()
            .enumerate()
            .map(|(index, handle)| Indexed(index, handle))
            .collect();
        let mut first_seen = None;
        while let Some((index, outcome)) = pending.next().await {
            match outcome.and_then(|result| result) {
                Ok(value) => results[index] = Some(value),
                Err(error) => {
                    if first_seen.is_none() {
                        self.shared.cancel_all();
                        first_seen = Some(error);
                    }
                }
            }
        }
        // The cause, not a sibling's cancellation that it caused and that may have landed
        // first.
        if let Some(error) = lock(&self.shared.first_error).take().or(first_seen) {
            return Err(error);
        }
        results
            .into_iter()
            .collect::<Option<Vec<T>>>()
            .ok_or(Error::Cancelled)
    }
}

impl<T> Drop for TaskGroup<T> {
    fn drop(&mut self) {
        // Through the shared cancel handles, which outlive `self.tasks`: a `join_all_async`
        // dropped half way (by a `select!` or a timeout) has moved the tasks out, and they
        // must still stop. Cancelling tasks that already finished does nothing.
        self.shared.cancel_all();
    }
}
