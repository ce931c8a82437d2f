//! The thread strand: CPU-bound work on a work-stealing pool of OS threads.
//!
//! Built on [`rayon_core`]'s pool. Rust threads have no global interpreter lock, so this
//! strand uses every core; it is the one to reach for where Python would need processes.
//! Tasks are closures; they share memory with the caller and each other.
//!
//! * [`Runtime::spawn`]: one task, one [`Handle`].
//! * [`Runtime::scope`]: tasks that borrow from the caller's stack.
//! * [`Runtime::join`]: two closures in parallel, for divide and conquer.
//! * [`Runtime::map`] / [`Runtime::map_unordered`]: a lazy parallel map over an iterator of
//!   any length, with a bounded number of items in flight.
//!
//! # Warning: blocking I/O
//!
//! A thread task that blocks on I/O or a lock holds a pool thread for as long as it waits,
//! and the pool has one thread per core. Put waits on the coroutine strand
//! ([`Runtime::spawn_async`]) and keep this strand for computing.

mod map;
mod scope;
pub(crate) mod worker;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

pub use map::{Map, MapUnordered};
pub use scope::{Scope, ScopedHandle};

use crate::error::{SpawnError, StrandName};
use crate::runtime::strand::StrandState;
use crate::runtime::{Config, Runtime};
use crate::task::core::{CancelTask, Core};
use crate::task::state::Reason;
use crate::task::wait;
use crate::{Error, Handle, Result, TaskId};

/// The pool and the books of the thread strand.
pub(crate) struct ThreadStrand {
    pool: rayon_core::ThreadPool,
    pub(crate) state: Arc<StrandState>,
    /// Where time limits of thread tasks are kept: the coroutine strand's timers.
    timers: tokio::runtime::Handle,
}

impl ThreadStrand {
    pub(crate) fn new(config: &Config, timers: tokio::runtime::Handle) -> Result<Self> {
        let state = Arc::new(StrandState::new(StrandName::Thread, config.queue_bound));
        let for_threads = Arc::clone(&state);
        let prefix = config.thread_name.clone();
        let mut builder = rayon_core::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(move |i| format!("{prefix}-{i}"))
            .start_handler(move |_| worker::install(Arc::clone(&for_threads)))
            // Tasks catch their own panics; this only sees a panicking destructor of a
            // task's value, which must not abort the process (rayon's default).
            .panic_handler(|payload| {
                let message = crate::error::panic_message(payload.as_ref());
                tracing::error!(%message, "a thread-strand job panicked outside its task");
            });
        if let Some(bytes) = config.thread_stack_size {
            builder = builder.stack_size(bytes);
        }
        let pool = builder.build().map_err(|error| Error::Build {
            reason: format!("could not start {} pool threads: {error}", config.threads),
        })?;
        Ok(ThreadStrand {
            pool,
            state,
            timers,
        })
    }

    pub(crate) fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Spawns an admitted task.
    pub(crate) fn spawn_admitted<F, T>(&self, body: F, limit: Option<Duration>) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = TaskId::next();
        let core = Arc::new(Core::new(body));
        let task = Arc::clone(&core);
        match limit {
            None => self.pool.spawn(move || worker::run_admitted(id, &*task)),
            Some(limit) => {
                let timers = self.timers.clone();
                self.pool.spawn(move || {
                    let cancel: Arc<dyn CancelTask> = Arc::clone(&task) as _;
                    let timer = timers.spawn(async move {
                        tokio::time::sleep(limit).await;
                        cancel.cancel(Reason::TimedOut);
                    });
                    worker::run_admitted(id, &*task);
                    timer.abort();
                });
            }
        }
        Handle::thread(id, core)
    }
}

impl Runtime {
    /// Runs `f` on the thread strand and returns a handle to its result.
    ///
    /// If the strand already holds its [queue bound](crate::Builder::queue_bound) of
    /// unfinished tasks, `spawn` waits for room (backpressure); a pool thread runs queued
    /// tasks while it waits. Use [`try_spawn`](Runtime::try_spawn) not to wait.
    ///
    /// After [`shutdown`](Runtime::shutdown) the returned handle reports
    /// [`Error::Shutdown`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let handles: Vec<_> = (0..4u64).map(|i| rt.spawn(move || i * i)).collect();
    /// let squares: Vec<u64> = handles.into_iter().map(|h| h.join()).collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_thread(f, None)
    }

    pub(crate) fn spawn_thread<F, T>(&self, f: F, limit: Option<Duration>) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let strand = &self.shared.threads;
        match strand.state.admit() {
            Ok(()) => strand.spawn_admitted(f, limit),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Like [`spawn`](Runtime::spawn), but never waits: if the strand is full (or shut
    /// down) the closure comes back inside the error, so nothing is lost.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when the strand holds its queue bound of unfinished tasks;
    /// [`Error::Shutdown`] after [`shutdown`](Runtime::shutdown).
    pub fn try_spawn<F, T>(&self, f: F) -> std::result::Result<Handle<T>, SpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let strand = &self.shared.threads;
        match strand.state.try_admit() {
            Ok(()) => Ok(strand.spawn_admitted(f, None)),
            Err(error) => Err(SpawnError::new(error, f)),
        }
    }

    /// Runs `a` and `b` in parallel on the thread strand and returns both results: the
    /// building block of divide and conquer (rayon's `join`).
    ///
    /// `b` is offered to idle threads while the current thread runs `a`; if nobody takes
    /// it, the current thread runs it too, so nested `join`s cost little more than calls.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] if either closure panicked (the other still runs to the end).
    ///
    /// # Examples
    ///
    /// ```
    /// fn sum(rt: &plait::Runtime, xs: &[u64]) -> u64 {
    ///     if xs.len() <= 1024 {
    ///         return xs.iter().sum();
    ///     }
    ///     let (left, right) = xs.split_at(xs.len() / 2);
    ///     let (a, b) = rt.join(|| sum(rt, left), || sum(rt, right)).unwrap();
    ///     a + b
    /// }
    /// let rt = plait::Runtime::new()?;
    /// let xs: Vec<u64> = (1..=100_000).collect();
    /// assert_eq!(sum(&rt, &xs), 5_000_050_000);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> Result<(RA, RB)>
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        let (ra, rb) = wait::blocking_region(|| {
            self.shared.threads.pool.join(
                || panic::catch_unwind(AssertUnwindSafe(a)),
                || panic::catch_unwind(AssertUnwindSafe(b)),
            )
        });
        Ok((
            ra.map_err(Error::from_panic)?,
            rb.map_err(Error::from_panic)?,
        ))
    }

    /// The number of threads in the thread strand.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.shared.threads.threads()
    }

    pub(crate) fn thread_pool(&self) -> &rayon_core::ThreadPool {
        &self.shared.threads.pool
    }
}
