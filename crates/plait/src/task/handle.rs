//! [`Handle`]: one result of one task, whichever strand runs it.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::task::{AbortHandle, JoinError, JoinHandle};

use super::core::Core;
use super::raw::{CancelRef, TaskRef};
use super::state::Reason;
use super::{TaskId, wait};
use crate::error::report_unobserved;
use crate::{Error, Result};

/// What a coroutine task's future returns: the output, or a boxed error (boxed to keep
/// tokio's task cell small; see `coroutine::tracked`).
pub(crate) type Outcome<T> = std::result::Result<T, Box<Error>>;

/// The result of one task, to wait for with [`join`](Handle::join) or `.await`.
///
/// Every strand hands out the same `Handle`, with the same errors: a panic in the task
/// arrives as [`Error::Panicked`], a cancellation as [`Error::Cancelled`], a time limit as
/// [`Error::TimedOut`].
///
/// # Dropping a handle
///
/// Dropping a `Handle` *detaches* its task: the task still runs to the end and its result is
/// discarded. A task is never lost by dropping its handle (unlike a Python task with no
/// reference left), and a detached task that panics does not vanish silently: the panic
/// hook prints it, and a detached thread task's panic is also reported through `tracing`.
/// To stop tasks when their owner goes away, put them in a [`TaskGroup`](crate::TaskGroup),
/// which cancels its tasks when dropped.
///
/// # Examples
///
/// ```
/// let rt = plait::Runtime::new()?;
/// let sum = rt.spawn(|| (1..=100u64).sum::<u64>());
/// let page = rt.spawn_async(async { "fetched".len() });
/// assert_eq!(sum.join()?, 5050);
/// assert_eq!(page.join()?, 7);
/// # Ok::<(), plait::Error>(())
/// ```
pub struct Handle<T> {
    inner: Inner<T>,
}

/// The bit of a coroutine handle's id word that says its cancellation took effect; ids
/// never reach it.
const CANCELLED: u64 = 1 << 63;

/// A thread task's id is in its core; a coroutine's is kept beside tokio's handle. Either
/// way a handle is two words (see docs/architecture.md, "What a queued thread task costs").
enum Inner<T> {
    Thread(ThreadJoin<'static, T>),
    Coroutine {
        /// The id, and [`CANCELLED`]: set by `cancel` once it has taken effect, so that the
        /// handle reports the cancellation whatever the task's last poll produced.
        id: AtomicU64,
        join: JoinHandle<Outcome<T>>,
    },
}

impl<T> Handle<T> {
    pub(crate) fn thread(task: TaskRef<T>) -> Self {
        Handle {
            inner: Inner::Thread(ThreadJoin::new(task)),
        }
    }

    pub(crate) fn coroutine(id: TaskId, join: JoinHandle<Outcome<T>>) -> Self {
        Handle {
            inner: Inner::Coroutine {
                id: AtomicU64::new(id.as_u64()),
                join,
            },
        }
    }

    /// A handle resolved at once, e.g. refused by a runtime that has shut down.
    pub(crate) fn ready(id: TaskId, result: Result<T>) -> Self
    where
        T: Send + 'static,
    {
        Handle::thread(TaskRef::queued(Core::<fn() -> T, T>::completed(id, result)))
    }

    /// The task's id.
    #[must_use]
    pub fn id(&self) -> TaskId {
        match &self.inner {
            Inner::Thread(task) => task.id(),
            Inner::Coroutine { id, .. } => {
                TaskId::from_u64(id.load(Ordering::Relaxed) & !CANCELLED)
            }
        }
    }

    /// Returns `true` once the task has finished (its result, or its error, is ready).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::Thread(task) => task.is_finished(),
            Inner::Coroutine { join, .. } => join.is_finished(),
        }
    }

    /// Cancels the task.
    ///
    /// * A task that has not started never starts.
    /// * A running coroutine is dropped at its next `.await`.
    /// * A running thread task cannot be stopped from outside: it is asked to stop, and sees
    ///   [`task::is_cancelled`](crate::task::is_cancelled) return `true`.
    ///
    /// Returns `true` if the cancellation took effect, in which case the handle reports
    /// [`Error::Cancelled`] (even if the task went on to produce a value, which is
    /// dropped); `false` if the task had already finished and its result stands.
    pub fn cancel(&self) -> bool {
        match &self.inner {
            Inner::Thread(task) => task.cancel(),
            Inner::Coroutine { id, join } => {
                if join.is_finished() {
                    return false;
                }
                join.abort();
                id.fetch_or(CANCELLED, Ordering::Release);
                true
            }
        }
    }

    /// A handle that can cancel the task from elsewhere (another thread, a timer, a signal
    /// handler) while this `Handle` waits for it.
    #[must_use]
    pub fn cancel_handle(&self) -> CancelHandle {
        let inner = match &self.inner {
            Inner::Thread(task) => CancelInner::Thread(task.canceller()),
            Inner::Coroutine { join, .. } => CancelInner::Coroutine(join.abort_handle()),
        };
        CancelHandle {
            id: self.id(),
            inner,
        }
    }

    /// Waits for the task and returns its result.
    ///
    /// Safe to call anywhere, including from inside a task:
    ///
    /// - On a thread of the thread strand, if the task is still queued on this very thread
    ///   (near the top of its deque, as a task just spawned from here is), it runs here, at
    ///   once. Otherwise the thread blocks and a spare thread takes its place, which
    ///   runs the pool's queued tasks meanwhile. So tasks that join tasks never exhaust the
    ///   pool, and no unrelated task ever runs on top of the joining one (where, if it
    ///   joined the task below it in turn, it could never see it resume): joins that form
    ///   no cycle finish, as long as spares can be had (below).
    /// - Inside one of plait's coroutines it first moves the worker's other tasks to another
    ///   thread (still, prefer `.await` there). Inside a coroutine of another tokio runtime
    ///   it blocks that runtime's worker thread while it waits.
    ///
    /// A pool keeps at most 256 spare threads alive at once, starting one only when no idle
    /// spare can take the place; a spare that has been idle for 10 seconds exits, so a
    /// burst of joins leaves no threads behind. Should more pool threads than that block at
    /// once, further joins run any queued task while they wait instead (rayon's way), which
    /// keeps the pool live but can run, on top of a joining task, one that waits for it or
    /// for a lock it holds.
    ///
    /// A task that blocks on something other than a task (a channel, a lock, a
    /// [`Semaphore`](crate::sync::Semaphore)) holds its pool thread, with no spare in its
    /// place: if what it waits for is a task queued behind it on a pool with no other free
    /// thread, it waits for good. Hand such waits to coroutines, or join the task instead.
    ///
    /// # Errors
    ///
    /// Whichever strand ran the task:
    ///
    /// - [`Error::Panicked`]: it panicked (the runtime is unharmed; the message is kept).
    /// - [`Error::Cancelled`]: it was cancelled (through its handle, its
    ///   [group](crate::TaskGroup), or a [shutdown](crate::Runtime::shutdown)) before it
    ///   produced a value.
    /// - [`Error::TimedOut`]: it ran past its own time limit
    ///   ([`TaskBuilder::timeout`](crate::TaskBuilder::timeout)).
    /// - [`Error::Shutdown`]: it was spawned on a runtime that had shut down.
    /// - [`Error::Failed`]: a task of a [`TaskGroup`](crate::TaskGroup) returned its own
    ///   error, or a closure was sent to [`Strand::Process`](crate::Strand::Process), where
    ///   closures cannot go.
    ///
    /// And for a task run in a worker process
    /// ([`spawn_process`](crate::Runtime::spawn_process) and its kin):
    ///
    /// - [`Error::WorkerLost`]: the worker died under it (an abort, a segfault, an `exit`, a
    ///   kill) and its crash retries, if any, were spent.
    /// - [`Error::MemoryLimit`]: it allocated past the worker's memory cap.
    /// - [`Error::Codec`]: its arguments or its result did not encode or decode.
    /// - [`Error::PayloadTooLarge`]: its arguments were over the payload limit.
    /// - [`Error::UnknownTask`]: no task is registered under the name it was spawned by.
    /// - [`Error::WorkerStart`]: no worker process could be started.
    pub fn join(self) -> Result<T> {
        self.wait(None)
            .unwrap_or_else(|_| unreachable!("a wait without deadline never times out"))
    }

    /// Waits at most `limit` for the task. If the task is not finished by then, it is
    /// cancelled (as by [`cancel`](Handle::cancel)) and `Err(Error::WaitTimedOut)` is
    /// returned: the wait's deadline, told apart from the task's own time limit
    /// ([`Error::TimedOut`]).
    ///
    /// # Errors
    ///
    /// As [`join`](Handle::join), and [`Error::WaitTimedOut`] when `limit` passes first.
    pub fn join_timeout(self, limit: Duration) -> Result<T> {
        let deadline = Instant::now().checked_add(limit);
        match self.wait(deadline) {
            Ok(result) => result,
            // Finished just after the deadline: the result stands.
            Err(handle) if !handle.cancel() => handle.join(),
            Err(_) => Err(Error::WaitTimedOut { waited: limit }),
        }
    }

    /// Waits until `deadline`; hands the handle back if it passes first.
    fn wait(mut self, deadline: Option<Instant>) -> std::result::Result<Result<T>, Self> {
        match &mut self.inner {
            Inner::Thread(task) => match task.join(deadline) {
                Some(result) => Ok(result),
                None => Err(self),
            },
            Inner::Coroutine { .. } => {
                match wait::blocking_region(|| wait::block_on_tasks(&mut self, deadline)) {
                    Some(result) => Ok(result),
                    None => Err(self),
                }
            }
        }
    }
}

impl<T, E> Handle<std::result::Result<T, E>>
where
    E: Into<crate::BoxError>,
{
    /// Waits for a task that returns a `Result`, and flattens the two layers of error: the
    /// task's own error arrives as [`Error::Failed`].
    ///
    /// # Errors
    ///
    /// As [`join`](Handle::join), and [`Error::Failed`] when the task returned `Err`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let parsed = rt.spawn(|| "x42".parse::<u32>());
    /// let err = parsed.try_join().unwrap_err();
    /// assert!(matches!(err, plait::Error::Failed(_)));
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn try_join(self) -> Result<T> {
        self.join()?.map_err(Error::failed)
    }
}

// A handle never pins its output in place: the output is only ever moved out as a value.
impl<T> Unpin for Handle<T> {}

impl<T> Future for Handle<T> {
    type Output = Result<T>;

    /// # Panics
    ///
    /// If polled again after it returned `Ready`, as futures may.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Thread(task) => task.poll_join(cx),
            Inner::Coroutine { id, join } => Pin::new(join).poll(cx).map(|outcome| {
                if id.load(Ordering::Acquire) & CANCELLED != 0 {
                    // Cancelled through this handle: what the task left is not reported,
                    // and its disposal (a panic payload, a value) may panic in turn.
                    if let Err(message) = crate::error::catch_panic(|| drop(outcome)) {
                        tracing::error!(%message, "dropping a cancelled coroutine's outcome panicked");
                    }
                    return Err(Error::Cancelled);
                }
                match outcome {
                    Ok(Ok(output)) => Ok(output),
                    Ok(Err(error)) => Err(*error),
                    Err(error) => Err(join_error(error)),
                }
            }),
        };
        if polled.is_pending() {
            // The coroutine awaiting this releases its slot meanwhile (see `coroutine::tracked`).
            crate::strand::note_awaiting_task();
        }
        polled
    }
}

/// What a tokio task that did not finish reports, in plait's terms.
fn join_error(error: JoinError) -> Error {
    match error.try_into_panic() {
        Ok(payload) => Error::from_panic(payload),
        Err(_) => Error::Cancelled,
    }
}

impl<T> Drop for Handle<T> {
    fn drop(&mut self) {
        if let Inner::Thread(task) = &mut self.inner
            && let Some(error) = task.detach()
        {
            report_unobserved(self.id(), &error);
        }
    }
}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let strand = match self.inner {
            Inner::Thread(_) => "thread",
            Inner::Coroutine { .. } => "coroutine",
        };
        f.debug_struct("Handle")
            .field("id", &self.id())
            .field("strand", &strand)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Cancels a task from elsewhere; obtained from [`Handle::cancel_handle`].
///
/// Cloning is cheap. Dropping it does nothing to the task.
#[derive(Clone)]
pub struct CancelHandle {
    id: TaskId,
    inner: CancelInner,
}

#[derive(Clone)]
enum CancelInner {
    Thread(CancelRef),
    Coroutine(AbortHandle),
    /// Work that stops some other way (a command run by a thread of its own): the function
    /// stops it and says whether that took effect.
    Stop(Arc<dyn Fn() -> bool + Send + Sync>),
}

impl CancelHandle {
    /// A canceller that calls `stop`, which says whether the cancellation took effect.
    pub(crate) fn from_fn(id: TaskId, stop: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        CancelHandle {
            id,
            inner: CancelInner::Stop(Arc::new(stop)),
        }
    }

    /// The task's id.
    #[must_use]
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Cancels the task, as [`Handle::cancel`] does.
    ///
    /// Returns `true` if the cancellation took effect. For a coroutine this is a best
    /// effort: `true` means the task had not finished when asked, and the task's handle
    /// reports the cancellation unless the coroutine completed before its next `.await`.
    pub fn cancel(&self) -> bool {
        match &self.inner {
            CancelInner::Thread(task) => task.cancel(Reason::Cancelled),
            CancelInner::Coroutine(abort) => {
                let running = !abort.is_finished();
                abort.abort();
                running
            }
            CancelInner::Stop(stop) => stop(),
        }
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The joining side of a thread-strand task, shared by [`Handle`] and
/// [`ScopedHandle`](crate::thread::ScopedHandle). `'a` bounds what the task may borrow.
pub(crate) struct ThreadJoin<'a, T> {
    task: TaskRef<T>,
    _borrows: PhantomData<&'a ()>,
}

impl<T> ThreadJoin<'_, T> {
    pub(crate) fn new(task: TaskRef<T>) -> Self {
        ThreadJoin {
            task,
            _borrows: PhantomData,
        }
    }

    fn id(&self) -> TaskId {
        self.task.header().id()
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.task.header().is_complete()
    }

    pub(crate) fn cancel(&self) -> bool {
        self.task.cancel(Reason::Cancelled)
    }

    fn canceller(&self) -> CancelRef {
        self.task.canceller()
    }

    /// Blocks until the output is ready (or `deadline` passes: `None`).
    pub(crate) fn join(&mut self, deadline: Option<Instant>) -> Option<Result<T>> {
        let task = self.task.addr();
        if !wait::until_complete(self.task.header(), deadline, &|job| job.is_task(task)) {
            return None;
        }
        Some(self.take())
    }

    pub(crate) fn poll_join(&mut self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let header = self.task.header();
        if !header.is_complete() && header.register(cx.waker()) {
            return Poll::Pending;
        }
        Poll::Ready(self.take())
    }

    fn take(&mut self) -> Result<T> {
        // SAFETY: the caller saw COMPLETE, and this is the task's one joiner (the only
        // owner of its handle).
        unsafe { self.task.take_output() }.expect("Handle polled after it returned its result")
    }

    /// Runs the task on the current thread if nobody has claimed it yet.
    pub(crate) fn run_here_if_queued(&self) {
        self.task.run_here();
    }

    /// Lets go of the task; returns its panic if it had already panicked unobserved.
    pub(crate) fn detach(&mut self) -> Option<Error> {
        if self.task.header().detach() {
            // SAFETY: `detach` returned true: the task is complete and its output, if not
            // taken already by this handle, is ours.
            unsafe { self.task.take_unobserved_panic() }
        } else {
            None
        }
    }
}

#[cfg(all(test, not(plait_loom)))]
mod tests {
    /// What a program that holds a handle per queued task pays: two words a handle (see
    /// docs/architecture.md, "What a queued thread task costs").
    #[test]
    fn a_handle_is_two_words() {
        assert_eq!(
            std::mem::size_of::<super::Handle<u64>>(),
            2 * std::mem::size_of::<usize>()
        );
    }
}
