//! The coroutine strand: I/O-bound work as futures on a multi-threaded tokio runtime.
//!
//! A coroutine that waits (for a socket, a timer, a child process, a channel) costs a few
//! hundred bytes and no thread, so tens of thousands can wait at once. Coroutines are
//! cancelled at their next `.await` and time limits stop them there too.
//!
//! * [`Runtime::spawn_async`]: one future, one [`Handle`] (the same type as threads').
//! * [`Runtime::map_async`]: a future per item with a concurrency limit.
//! * [`Runtime::block_on`]: run a future to completion from synchronous code.
//! * [`timeout`]: a time limit on any future.
//!
//! # Warning: blocking calls
//!
//! A coroutine that blocks (a CPU loop, `std::thread::sleep`, a blocking lock or file read)
//! stalls every coroutine queued on its worker. Send computing to the thread strand
//! ([`Runtime::spawn`]) and await its handle.

mod books;
mod map;
mod tracked;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The stream traits of [`map_async`](Runtime::map_async)'s results (from `futures`), so
/// that `.next().await` works without another dependency.
pub use futures_util::stream::{Stream, StreamExt};
pub use map::{BlockingIter, MapAsync, MapAsyncUnordered};

use crate::books::StrandState;
use crate::error::{SpawnError, StrandName};
use crate::runtime::{Config, Runtime};
use crate::task::wait;
use crate::{Error, Handle, Result, TaskId};
use books::Books;
use tracked::{Limited, Tracked, TrackedResult, Unlimited};

/// The tokio runtime and the books of the coroutine strand.
pub(crate) struct CoroutineStrand {
    /// Taken out to shut it down.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) state: Arc<StrandState>,
    /// The strand's number in the books (see `books.rs`).
    number: u64,
}

impl CoroutineStrand {
    /// Starts the strand; `also_books` is another strand whose tasks run as coroutines here
    /// (the process strand's).
    pub(crate) fn new(config: &Config, also_books: &Arc<StrandState>) -> Result<(Self, u64)> {
        let state = Arc::new(StrandState::new(StrandName::Coroutine, config.queue_bound));
        let number = books::register(&state);
        let also_number = books::register(also_books);
        let strands: books::Strands = Arc::from([
            (number, Arc::clone(&state)),
            (also_number, Arc::clone(also_books)),
        ]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.coroutine_workers)
            .thread_name(format!("{}-io", config.thread_name))
            .on_thread_start(move || books::install(Arc::clone(&strands)))
            .enable_all()
            .build()
            .map_err(|error| Error::Build {
                reason: format!(
                    "could not start {} coroutine workers: {error}",
                    config.coroutine_workers
                ),
            })?;
        let strand = CoroutineStrand {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            state,
            number,
        };
        Ok((strand, also_number))
    }

    /// Spawns a future that reports its own errors, booked to strand `books` (admitted
    /// there already).
    pub(crate) fn spawn_booked<Fut, T>(&self, future: Fut, books: u64) -> Handle<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let join = self
            .handle
            .spawn(TrackedResult::new(future, Books::new(books)));
        Handle::coroutine(TaskId::next(), join)
    }

    pub(crate) fn spawn_admitted<Fut>(
        &self,
        future: Fut,
        limit: Option<Duration>,
    ) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let id = TaskId::next();
        let books = Books::new(self.number);
        let join = match limit {
            None => self
                .handle
                .spawn(Tracked::new(Unlimited::new(future), books)),
            Some(limit) => self
                .handle
                .spawn(Tracked::new(Limited::new(future, limit), books)),
        };
        Handle::coroutine(id, join)
    }

    /// Drops every coroutine (they see it at their next `.await`). With `wait`, waits up
    /// to that long until all are dropped, so that their cancellations are booked when this
    /// returns; not inside a runtime, where blocking is not allowed.
    pub(crate) fn stop(&self, wait: Option<Duration>) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match (runtime, wait) {
            (Some(runtime), Some(limit)) if tokio::runtime::Handle::try_current().is_err() => {
                runtime.shutdown_timeout(limit);
            }
            (Some(runtime), _) => runtime.shutdown_background(),
            (None, _) => {}
        }
    }

    pub(crate) fn workers(&self) -> usize {
        self.handle.metrics().num_workers()
    }
}

impl Runtime {
    /// Runs `future` on the coroutine strand and returns a handle to its output.
    ///
    /// Waits for room if the strand holds its [queue bound](crate::Builder::queue_bound) of
    /// unfinished coroutines (see [`try_spawn_async`](Runtime::try_spawn_async)); a
    /// coroutine waiting for tasks lends its slot (see
    /// [`queue_bound`](crate::Builder::queue_bound)), so coroutines that spawn and await
    /// their children cannot deadlock on the bound. After
    /// [`shutdown`](Runtime::shutdown) the handle reports [`Error::Shutdown`].
    ///
    /// The future is made by the caller, outside the runtime: one whose making needs the
    /// runtime (`tokio::time::sleep(d)` registers a timer) must be made inside an `async`
    /// block, as below, or it panics for want of a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = plait::Runtime::new()?;
    /// let waits: Vec<_> = (0..1000)
    ///     .map(|i| rt.spawn_async(async move {
    ///         tokio::time::sleep(Duration::from_millis(20)).await;
    ///         i
    ///     }))
    ///     .collect();
    /// let started = std::time::Instant::now();
    /// let total: u64 = waits.into_iter().map(|h| h.join().unwrap()).sum();
    /// assert_eq!(total, 499_500);
    /// assert!(started.elapsed() < Duration::from_secs(2)); // 1000 waits at once, not in turn
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn spawn_async<Fut>(&self, future: Fut) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.spawn_coroutine(future, None)
    }

    pub(crate) fn spawn_coroutine<Fut>(
        &self,
        future: Fut,
        limit: Option<Duration>,
    ) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let strand = &self.shared.coroutines;
        match strand.state.admit() {
            Ok(()) => strand.spawn_admitted(future, limit),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Spawns a future that reports its own errors (flattened into the handle's).
    pub(crate) fn spawn_coroutine_fallible<Fut, T>(&self, future: Fut) -> Handle<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let strand = &self.shared.coroutines;
        match strand.state.admit() {
            Ok(()) => strand.spawn_booked(future, strand.number),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Like [`spawn_async`](Runtime::spawn_async), but never waits: if the strand is full
    /// (or shut down) the future comes back inside the error.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] or [`Error::Shutdown`], with the future.
    pub fn try_spawn_async<Fut>(
        &self,
        future: Fut,
    ) -> std::result::Result<Handle<Fut::Output>, SpawnError<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let strand = &self.shared.coroutines;
        match strand.state.try_admit() {
            Ok(()) => Ok(strand.spawn_admitted(future, None)),
            Err(error) => Err(SpawnError::new(error, future)),
        }
    }

    /// Runs `future` to completion on the current thread and returns its output: the bridge
    /// from synchronous code into coroutines. Tokio's timers, sockets and channels work
    /// inside it.
    ///
    /// Safe to call from inside a coroutine (the worker's other tasks move to another thread
    /// first), though `.await` is better there. Inside a thread-strand task it holds the pool
    /// thread while the future waits, like any blocking call: if the future waits for other
    /// thread tasks, [`Handle::join`] them instead, which lends the thread's place to a spare
    /// thread while it waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let answer = rt.block_on(async {
    ///     let a = rt.spawn_async(async { 20 });
    ///     let b = rt.spawn(|| 22);
    ///     a.await.unwrap() + b.await.unwrap()
    /// });
    /// assert_eq!(answer, 42);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        wait::blocking_region(|| {
            let _context = self.shared.coroutines.handle.enter();
            wait::block_on(future, None)
        })
        .unwrap_or_else(|| unreachable!("a wait without deadline never times out"))
    }

    /// The number of worker threads of the coroutine strand.
    #[must_use]
    pub fn coroutine_workers(&self) -> usize {
        self.shared.coroutines.workers()
    }
}

/// Puts a time limit on `future`: it is dropped when `limit` passes, and the result is
/// [`Error::TimedOut`].
///
/// Being cancelled while waiting cancels `future` too (dropping the returned future drops
/// it), so a cancellation is never swallowed, unlike Python's `asyncio.wait_for` before
/// 3.12. Must run on a runtime's coroutine strand (or inside [`Runtime::block_on`]).
///
/// # Errors
///
/// [`Error::TimedOut`] when `limit` passes before `future` completes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = plait::Runtime::new()?;
/// let slow = rt.block_on(plait::timeout(Duration::from_millis(10), async {
///     tokio::time::sleep(Duration::from_secs(10)).await;
/// }));
/// assert!(slow.unwrap_err().is_timeout());
/// # Ok::<(), plait::Error>(())
/// ```
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Result<F::Output> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| Error::TimedOut)
}
