//! The coroutine strand: I/O-bound work as futures on a multi-threaded tokio runtime.
//!
//! A coroutine that waits (for a socket, a timer, a child process, a channel) costs a few
//! hundred bytes and no thread, so tens of thousands can wait at once. Coroutines are
//! cancelled at their next `.await` and time limits stop them there too.
//!
//! * [`Runtime::spawn_async`](crate::Runtime::spawn_async): one future, one [`Handle`] (the same type as threads').
//! * [`Runtime::map_async`](crate::Runtime::map_async): a future per item with a concurrency limit.
//! * [`Runtime::block_on`](crate::Runtime::block_on): run a future to completion from synchronous code.
//! * [`timeout`]: a time limit on any future.
//!
//! # Warning: blocking calls
//!
//! A coroutine that blocks (a CPU loop, `std::thread::sleep`, a blocking lock or file read)
//! stalls every coroutine queued on its worker. Send computing to the thread strand
//! ([`Runtime::spawn`](crate::Runtime::spawn)) and await its handle.

mod in_flight;
pub(crate) mod map;
mod tracked;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The stream traits of [`map_async`](crate::Runtime::map_async)'s results (from `futures`), so
/// that `.next().await` works without another dependency.
pub use futures_util::stream::{Stream, StreamExt};
pub use map::{BlockingIter, MapAsync, MapAsyncUnordered};

use crate::error::{SpawnError, StrandName};
use crate::strand::StrandState;
use crate::task::wait;
use crate::{Error, Handle, Result, TaskId};
use in_flight::InFlight;
use tracked::{Limited, Tracked, TrackedResult, Unlimited};

/// The tokio runtime and the state of the coroutine strand.
pub(crate) struct CoroutineStrand {
    /// Taken out to shut it down.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) state: Arc<StrandState>,
    /// The strand's number among the strands whose tasks run as coroutines (see
    /// `in_flight.rs`).
    number: u64,
}

impl CoroutineStrand {
    /// Starts the strand: `workers` threads named `NAME-io`, `queue_bound` unfinished
    /// coroutines at most. `also_counted` is another strand whose tasks run as coroutines
    /// here (the process strand's).
    pub(crate) fn new(
        workers: usize,
        name: &str,
        queue_bound: usize,
        also_counted: &Arc<StrandState>,
        on_start: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<(Self, u64)> {
        let state = Arc::new(StrandState::new(StrandName::Coroutine, queue_bound));
        let number = in_flight::register(&state);
        let also_number = in_flight::register(also_counted);
        let strands: in_flight::Strands = Arc::from([
            (number, Arc::clone(&state)),
            (also_number, Arc::clone(also_counted)),
        ]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(format!("{name}-io"))
            .on_thread_start(move || {
                in_flight::install(Arc::clone(&strands));
                on_start();
            })
            .enable_all()
            .build()
            .map_err(|error| Error::Build {
                reason: format!("could not start {workers} coroutine workers: {error}"),
            })?;
        let strand = CoroutineStrand {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            state,
            number,
        };
        Ok((strand, also_number))
    }

    /// Spawns a future that reports its own errors, counted on strand `strand` (admitted
    /// there already).
    pub(crate) fn spawn_counted<Fut, T>(&self, future: Fut, strand: u64) -> Handle<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let join = self
            .handle
            .spawn(TrackedResult::new(future, InFlight::new(strand)));
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
        let in_flight = InFlight::new(self.number);
        let join = match limit {
            None => self
                .handle
                .spawn(Tracked::new(Unlimited::new(future), in_flight)),
            Some(limit) => self
                .handle
                .spawn(Tracked::new(Limited::new(future, limit), in_flight)),
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

impl CoroutineStrand {
    /// Spawns `future` once the strand admits it (waiting for room), with an optional time
    /// limit; a refusal is the handle's error.
    pub(crate) fn spawn<Fut>(&self, future: Fut, limit: Option<Duration>) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        match self.state.admit() {
            Ok(()) => self.spawn_admitted(future, limit),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Spawns a future that reports its own errors (flattened into the handle's).
    pub(crate) fn spawn_fallible<Fut, T>(&self, future: Fut) -> Handle<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        match self.state.admit() {
            Ok(()) => self.spawn_counted(future, self.number),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Spawns `future` if the strand has room now; hands it back otherwise.
    pub(crate) fn try_spawn<Fut>(
        &self,
        future: Fut,
    ) -> std::result::Result<Handle<Fut::Output>, SpawnError<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        match self.state.try_admit() {
            Ok(()) => Ok(self.spawn_admitted(future, None)),
            Err(error) => Err(SpawnError::new(error, future)),
        }
    }

    /// Runs `future` to completion on the current thread, inside this strand's context.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        wait::blocking_region(|| {
            let _context = self.handle.enter();
            wait::block_on(future, None)
        })
        .unwrap_or_else(|| unreachable!("a wait without deadline never times out"))
    }
}

/// Puts a time limit on `future`: it is dropped when `limit` passes, and the result is
/// [`Error::TimedOut`].
///
/// Made anywhere (it does nothing until polled); polled outside a runtime's coroutine
/// strand it fails with [`Error::NoRuntime`] rather than panicking.
///
/// Being cancelled while waiting cancels `future` too (dropping the returned future drops
/// it), so a cancellation is never swallowed, unlike Python's `asyncio.wait_for` before
/// 3.12. Must run on a runtime's coroutine strand (or inside [`Runtime::block_on`](crate::Runtime::block_on)).
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
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::NoRuntime);
    }
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| Error::TimedOut)
}

/// Waits for `duration`, as a coroutine. Unlike `tokio::time::sleep`, it may be made on any
/// thread, outside a runtime (`rt.spawn_async(plait::sleep(d))` from `main`): it starts
/// its timer when first polled, on the runtime that polls it. Polled by an executor with
/// no timer of its own, it keeps time on a thread of its own, and never panics.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let rt = plait::Runtime::new()?;
/// let started = Instant::now();
/// // Made here, on a thread no runtime started.
/// rt.spawn_async(plait::sleep(Duration::from_millis(20))).join()?;
/// assert!(started.elapsed() >= Duration::from_millis(20));
/// # Ok::<(), plait::Error>(())
/// ```
pub async fn sleep(duration: Duration) {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(duration).await;
        return;
    }
    let (done, waited) = tokio::sync::oneshot::channel::<()>();
    let timer = std::thread::Builder::new()
        .name("plait-sleep".into())
        .spawn(move || {
            std::thread::sleep(duration);
            let _ = done.send(());
        });
    match timer {
        Ok(_) => {
            let _ = waited.await;
        }
        // No thread to keep the time: wait here, which blocks this executor's thread but
        // keeps the promise.
        Err(_) => std::thread::sleep(duration),
    }
}
