//! The thread strand: CPU-bound work on a work-stealing pool of OS threads.
//!
//! Built on plait's work-stealing pool (`crossbeam-deque` underneath). Rust threads have no
//! global interpreter lock, so this strand uses every core: it is the one to reach for where
//! Python would need processes. Tasks are closures; they share memory with the caller and
//! with each other.
//!
//! * [`Runtime::spawn`](crate::Runtime::spawn): one task, one [`Handle`].
//! * [`Runtime::scope`](crate::Runtime::scope): tasks that borrow from the caller's stack.
//! * [`Runtime::join`](crate::Runtime::join): two closures in parallel, for divide and conquer.
//! * [`Runtime::map`](crate::Runtime::map) / [`Runtime::map_unordered`](crate::Runtime::map_unordered): a lazy parallel map over an iterator of
//!   any length, with a bounded number of items in flight; [`Map::collect_vec`] runs it at
//!   once, writing each result into its place in a `Vec`.
//!
//! # Warning: blocking I/O
//!
//! A thread task that blocks on I/O or a lock holds a pool thread for as long as it waits,
//! and the pool has one thread per core. Put waits on the coroutine strand
//! ([`Runtime::spawn_async`](crate::Runtime::spawn_async)) and keep this strand for computing.

mod collect;
pub(crate) mod map;
mod role;
mod scope;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

pub use map::{Map, MapUnordered};
pub use scope::{Scope, ScopedHandle};

use crate::error::{SpawnError, StrandName};

use self::role::WithRole;
use crate::pool::fork::ForkLatch;
use crate::pool::job::JobRef;
use crate::pool::{self, Pool};
use crate::strand::StrandState;
use crate::task::core::Core;
use crate::task::handle::ThreadJoin;
use crate::task::raw::TaskRef;
use crate::task::wait;
use crate::{Error, Handle, Result, TaskId};

/// The pool and the state of the thread strand.
pub(crate) struct ThreadStrand {
    pool: Pool,
    pub(crate) state: Arc<StrandState>,
}

impl ThreadStrand {
    /// Starts the pool's threads (`options`), with `queue_bound` unfinished tasks at most.
    pub(crate) fn new(options: &pool::Options, queue_bound: usize) -> Result<Self> {
        let state = Arc::new(StrandState::new(StrandName::Thread, queue_bound));
        let pool = Pool::new(
            options,
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
        let task = TaskRef::queued(Core::new(TaskId::next(), body));
        self.pool.push(JobRef::task(task.job()));
        Handle::thread(task)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl ThreadStrand {
    /// Spawns `f` once the strand admits it (waiting for room), with an optional time
    /// limit; a refusal is the handle's error.
    pub(crate) fn spawn<F, T>(&self, f: F, limit: Option<Duration>) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.state.admit() {
            Ok(()) => self.spawn_admitted(f, limit),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Spawns `f` if the strand has room now; hands it back otherwise.
    pub(crate) fn try_spawn<F, T>(&self, f: F) -> std::result::Result<Handle<T>, SpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.state.try_admit() {
            Ok(()) => Ok(self.spawn_admitted(f, None)),
            Err(error) => Err(SpawnError::new(error, f)),
        }
    }

    /// Runs `a` here and `b` on the pool (or here, if no pool thread took it), and returns
    /// both results; see `Runtime::join`.
    pub(crate) fn join<A, B, RA, RB>(&self, a: A, b: B) -> Result<(RA, RB)>
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        // On a pool thread: the fork-join without an allocation. Until `b` has run, a queue
        // entry points into that frame: an unexpected unwind must not leave it.
        let bomb = wait::AbortOnUnwind("a join's wait for its second closure");
        let (a, b) = match self.pool.join_on_worker(a, b, &wait_for_thief) {
            Ok(joined) => {
                std::mem::forget(bomb);
                return joined;
            }
            Err(closures) => {
                std::mem::forget(bomb);
                closures
            }
        };
        // SAFETY: before this function returns, on every path out of it, `b` has completed
        // (run, or dropped by a cancellation) and its output is taken, and the bomb turns any
        // unwind before that into an abort. What is left of the task in the pool after that
        // holds nothing that borrows: the pool can only drop its reference to a core whose
        // stage is empty.
        let task = unsafe { TaskRef::queued_borrowing(WithRole::joined(b)) };
        self.pool.push(JobRef::task(task.job()));
        let bomb = wait::AbortOnUnwind("a join's wait for its second closure");
        let mut b = ThreadJoin::new(task);
        let ra = panic::catch_unwind(AssertUnwindSafe(a)).map_err(Error::from_panic);
        // Run `b` here if no pool thread has started it; otherwise wait for it (with a spare
        // in this thread's place, on a pool thread).
        b.run_here_if_queued();
        let rb = b
            .join(None)
            .unwrap_or_else(|| unreachable!("a wait without deadline never times out"));
        drop(b);
        std::mem::forget(bomb);
        Ok((ra?, rb?))
    }
}

/// How a pool thread's `join` waits once a thief took its second closure: first runs the
/// entry itself if it is in fact still queued near the top of this thread's deque (below
/// tasks `a` left), then spins, then parks with a spare thread in its place (see
/// [`wait::Idle`]) until the thief sets `latch`.
fn wait_for_thief(latch: &ForkLatch, ours: &dyn Fn(&JobRef) -> bool) {
    if pool::help_with(ours) && latch.is_set() {
        return;
    }
    // Says it may park only once: a thief that sees that must find the handle.
    wait::until_unparked(&|| latch.is_set(), ours, || latch.sleepy());
}
