//! The thread strand: CPU-bound work on a work-stealing pool of OS threads.
//!
//! Built on plait's work-stealing pool (`crossbeam-deque` underneath). Rust threads have no
//! global interpreter lock, so this strand uses every core: it is the one to reach for where
//! Python would need processes. Tasks are closures; they share memory with the caller and
//! with each other.
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

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

pub use map::{Map, MapUnordered};
pub use scope::{Scope, ScopedHandle};

use crate::books::StrandState;
use crate::error::{SpawnError, StrandName};
use crate::pool::job::{Job, JobRef};
use crate::pool::{self, Pool};
use crate::runtime::{Config, Runtime};
use crate::task::core::Core;
use crate::task::handle::ThreadJoin;
use crate::task::wait;
use crate::{Error, Handle, Result, TaskId};

/// The pool and the books of the thread strand.
pub(crate) struct ThreadStrand {
    pool: Pool,
    pub(crate) state: Arc<StrandState>,
}

impl ThreadStrand {
    pub(crate) fn new(config: &Config) -> Result<Self> {
        let state = Arc::new(StrandState::new(StrandName::Thread, config.queue_bound));
        let pool = Pool::new(
            &pool::Options {
                threads: config.threads,
                name: config.thread_name.clone(),
                stack_size: config.thread_stack_size,
            },
            pool::Context {
                strand: Arc::clone(&state),
            },
        )?;
        Ok(ThreadStrand { pool, state })
    }

    pub(crate) fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Spawns an admitted task.
    pub(crate) fn spawn_admitted<F, T>(&self, body: F, limit: Option<Duration>) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match limit {
            None => self.push_admitted(body),
            // The limit rides in the body: it starts when the body does, on whichever thread
            // runs it (a pool thread, or a joiner running it in place).
            Some(limit) => {
                self.push_admitted(move || crate::task::current::with_time_limit(limit, body))
            }
        }
    }

    fn push_admitted<F, T>(&self, body: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = TaskId::next();
        let core = Arc::new(Core::new(id, body));
        self.pool.push(JobRef::admitted(Arc::clone(&core) as _));
        Handle::thread(id, core)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Runtime {
    /// Runs `f` on the thread strand and returns a handle to its result.
    ///
    /// If the strand already holds its [queue bound](crate::Builder::queue_bound) of
    /// unfinished tasks, `spawn` waits for room (backpressure); a pool thread lends its place
    /// to a spare thread while it waits, so the queued tasks still run; and a task waiting
    /// for tasks lends its slot in the bound (see [`queue_bound`](crate::Builder::queue_bound)),
    /// so tasks that spawn and join their children cannot deadlock on it. Use
    /// [`try_spawn`](Runtime::try_spawn) not to wait.
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

    /// Runs `a` and `b` in parallel and returns both results: the building block of divide
    /// and conquer (rayon's `join`).
    ///
    /// `a` runs on the current thread while `b` is offered to the pool; if no pool thread
    /// has taken `b` by the time `a` is done, the current thread runs it too, so `join`
    /// returns even when every pool thread is busy. If a pool thread has `b`, the current
    /// thread waits for it (lending its place to a spare thread, on a pool thread, as
    /// [`Handle::join`](crate::Handle::join) does).
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
        let core = Arc::new(Core::new(TaskId::next(), b));
        let job: Arc<dyn Job + '_> = Arc::clone(&core) as _;
        // SAFETY: `b`'s output is taken below, after it completed, on every path out of this
        // function, and the bomb turns any unwind before that into an abort.
        self.thread_pool().push(unsafe { JobRef::joined(job) });
        let bomb = wait::AbortOnUnwind("a join's wait for its second closure");
        let mut b = ThreadJoin::new(core);
        let ra = panic::catch_unwind(AssertUnwindSafe(a)).map_err(Error::from_panic);
        // Run `b` here if no pool thread has started it; otherwise wait for it (lending this
        // thread's place to a spare, on a pool thread).
        b.run_here_if_queued();
        let rb = b
            .join(None)
            .unwrap_or_else(|| unreachable!("a wait without deadline never times out"));
        drop(b);
        std::mem::forget(bomb);
        Ok((ra?, rb?))
    }

    /// The number of threads in the thread strand.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.shared.threads.threads()
    }

    pub(crate) fn thread_pool(&self) -> &Pool {
        self.shared.threads.pool()
    }
}
