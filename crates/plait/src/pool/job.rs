//! What the pool's queues hold: a task, type-erased, and what to do once it has run.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Thread};

use crate::error::Error;
use crate::id::TaskId;

/// How a run ended, for the strand's count.
#[derive(Debug, Default)]
pub(crate) struct Ran {
    /// The task was stopped, or reports a cancellation, rather than its output.
    pub(crate) cancelled: bool,
    /// The task panicked and its handle was already gone: the panic must be reported
    /// somewhere else so it is not lost.
    pub(crate) unobserved_panic: Option<Error>,
}

/// A task the pool can run: a thread-strand task's core with its types erased.
pub(crate) trait Job: Send + Sync {
    /// Runs the task (or skips it, if it was cancelled before it started) and lets go of
    /// the pool's reference. `strand_cancelled` says whether the strand is shutting down.
    fn run(self: Arc<Self>, strand_cancelled: &dyn Fn() -> bool) -> Ran;

    fn id(&self) -> TaskId;

    /// Whether the task was claimed already (run in place by its joiner, or cancelled):
    /// its entry is left over, and running it only counts it finished.
    fn is_claimed(&self) -> bool;
}

/// One entry of a pool queue.
pub(crate) struct JobRef {
    // Declared before `kind`: when an entry is dropped unrun, the job goes first, so a scope
    // is told only once nothing of its job is left in the pool.
    job: Arc<dyn Job>,
    kind: Kind,
}

pub(crate) enum Kind {
    /// A task admitted by the strand: booked as finished when it has run.
    Admitted,
    /// A task of a scope, which waits for the guard to drop.
    Scoped(ScopeGuard),
    /// The second half of a `join`, which its caller waits for itself.
    Joined,
}

impl JobRef {
    pub(crate) fn admitted(job: Arc<dyn Job>) -> Self {
        JobRef {
            job,
            kind: Kind::Admitted,
        }
    }

    /// A job that borrows data for `'scope`.
    ///
    /// # Safety
    ///
    /// The caller must not let `'scope` end before `guard`'s latch has counted this entry
    /// done, which happens only after the pool has dropped its reference to the job (when it
    /// has run, or when the entry is dropped unrun). Then nothing borrowed for `'scope` is
    /// used after it ends, though the queues' type says `'static`.
    pub(crate) unsafe fn scoped<'scope>(job: Arc<dyn Job + 'scope>, guard: ScopeGuard) -> Self {
        // SAFETY: only the lifetime bound of the trait object changes (same layout); the
        // caller upholds the contract above.
        let job: Arc<dyn Job> =
            unsafe { std::mem::transmute::<Arc<dyn Job + 'scope>, Arc<dyn Job>>(job) };
        JobRef {
            job,
            kind: Kind::Scoped(guard),
        }
    }

    /// A job that borrows data for `'scope` and that its caller waits for itself (the second
    /// closure of a `join`).
    ///
    /// # Safety
    ///
    /// Before `'scope` ends, and without unwinding before then, the caller must have seen
    /// the job complete (its body run, or dropped by a cancellation) and taken its output.
    /// What is left of the job in the pool after that holds no value that borrows: the pool
    /// can only drop its reference to a core whose stage is empty.
    pub(crate) unsafe fn joined<'scope>(job: Arc<dyn Job + 'scope>) -> Self {
        // SAFETY: only the lifetime bound of the trait object changes (same layout); the
        // caller upholds the contract above.
        let job: Arc<dyn Job> =
            unsafe { std::mem::transmute::<Arc<dyn Job + 'scope>, Arc<dyn Job>>(job) };
        JobRef {
            job,
            kind: Kind::Joined,
        }
    }

    pub(crate) fn into_parts(self) -> (Arc<dyn Job>, Kind) {
        (self.job, self.kind)
    }

    /// Whether the entry's task was claimed already, so that running it runs no user code.
    pub(crate) fn is_left_over(&self) -> bool {
        self.job.is_claimed()
    }

    /// Whether this entry is the task whose core is at `core` (compared by address only).
    pub(crate) fn is_task(&self, core: *const ()) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.job).cast::<()>(), core)
    }

    /// Whether this entry is a task of the scope that waits on `latch`.
    pub(crate) fn is_of_scope(&self, latch: &ScopeLatch) -> bool {
        matches!(&self.kind, Kind::Scoped(guard) if guard.0 == NonNull::from(latch))
    }
}

/// Counts one job of a scope done when dropped.
pub(crate) struct ScopeGuard(NonNull<ScopeLatch>);

// SAFETY: a guard only reaches its latch through `&ScopeLatch`, and `ScopeLatch` is `Sync`.
unsafe impl Send for ScopeGuard {}

impl ScopeGuard {
    /// Hands an unobserved panic of the job to its scope.
    pub(crate) fn record(&self, error: Error) {
        // SAFETY: the latch outlives every guard (see `Drop`), and this guard is alive.
        unsafe { self.0.as_ref() }.record(error);
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        // SAFETY: the latch outlives every guard: its scope does not end before `finished`
        // is set, and the last guard sets it only after its last use of the latch.
        unsafe { ScopeLatch::done(self.0) }
    }
}

/// A scope's count of jobs not yet done, the thread that waits for it, and the first panic
/// that nobody observed.
///
/// It lives on the scope's stack frame, and each queued job holds a plain pointer to it (a
/// reference count per job would add two contended atomic operations to every spawn). That
/// is sound because the scope waits for `finished`, which whoever brings `pending` to zero
/// sets only after its last access to the latch (it wakes the owner through a clone of the
/// owner's thread handle).
///
/// `pending` starts at one, the owner's own share, which the owner gives up once its closure
/// has returned: so `pending` reaches zero exactly once, after the last spawn.
pub(crate) struct ScopeLatch {
    pending: AtomicUsize,
    finished: AtomicBool,
    owner: Thread,
    panic: Mutex<Option<Error>>,
}

impl ScopeLatch {
    /// A latch for the current thread to wait on.
    pub(crate) fn new() -> Self {
        ScopeLatch {
            pending: AtomicUsize::new(1),
            finished: AtomicBool::new(false),
            owner: thread::current(),
            panic: Mutex::new(None),
        }
    }

    /// One more job to wait for; the guard counts it done.
    ///
    /// # Safety
    ///
    /// The latch must not go away before [`is_finished`](Self::is_finished) says so, and no
    /// guard may be made after [`release_owner`](Self::release_owner).
    pub(crate) unsafe fn guard(&self) -> ScopeGuard {
        // The owner's share keeps `pending` above zero, so this cannot race a finish.
        self.pending.fetch_add(1, Ordering::Relaxed);
        ScopeGuard(NonNull::from(self))
    }

    /// The owner is done spawning: it gives up its share, once.
    pub(crate) fn release_owner(&self) {
        // SAFETY: the owner keeps the latch alive until it is finished.
        unsafe { ScopeLatch::done(NonNull::from(self)) }
    }

    /// # Safety
    ///
    /// `latch` is live, and this is the last use of it by this guard.
    unsafe fn done(latch: NonNull<ScopeLatch>) {
        // SAFETY: live by the caller's contract; `finished` is still false, so the owner waits.
        let this = unsafe { latch.as_ref() };
        if this.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let owner = this.owner.clone();
            // After this store the owner may return and free the latch: touch it no more.
            this.finished.store(true, Ordering::Release);
            owner.unpark();
        }
    }

    /// Whether every job is done and out of the pool.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Keeps the first unobserved panic, to re-raise when the scope ends.
    pub(crate) fn record(&self, error: Error) {
        let mut first = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(error);
    }

    pub(crate) fn take_panic(&self) -> Option<Error> {
        self.panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
