//! What the pool's queues hold: a task, type-erased, and what to do once it has run.

use std::sync::Arc;

pub(crate) use super::fork::ForkRef;
pub(crate) use super::latch::{ScopeGuard, ScopeLatch};
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
pub(crate) enum JobRef {
    /// A task with a reference-counted core.
    Task {
        // Declared before `kind`: when an entry is dropped unrun, the job goes first, so a
        // scope is told only once nothing of its job is left in the pool.
        job: Arc<dyn Job>,
        kind: Kind,
    },
    /// The second closure of a `join` made on a pool thread, on the joiner's stack. Its
    /// joiner waits for it, so the entry is never dropped unrun: whoever takes it runs it.
    Forked(ForkRef),
}

pub(crate) enum Kind {
    /// A task admitted by the strand: booked as finished when it has run.
    Admitted,
    /// A task of a scope, which waits for the guard to drop.
    Scoped(ScopeGuard),
    /// The second half of a `join` made off the pool, which its caller waits for itself.
    Joined,
}

impl JobRef {
    pub(crate) fn admitted(job: Arc<dyn Job>) -> Self {
        JobRef::Task {
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
        JobRef::Task {
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
        JobRef::Task {
            job,
            kind: Kind::Joined,
        }
    }

    /// Whether the entry's task was claimed already, so that running it runs no user code.
    pub(crate) fn is_left_over(&self) -> bool {
        match self {
            JobRef::Task { job, .. } => job.is_claimed(),
            JobRef::Forked(_) => false,
        }
    }

    /// Whether this entry is the task whose core is at `core` (compared by address only).
    pub(crate) fn is_task(&self, core: *const ()) -> bool {
        matches!(self, JobRef::Task { job, .. } if std::ptr::eq(Arc::as_ptr(job).cast::<()>(), core))
    }

    /// Whether this entry is a task of the scope that waits on `latch`.
    pub(crate) fn is_of_scope(&self, latch: &ScopeLatch) -> bool {
        matches!(self, JobRef::Task { kind: Kind::Scoped(guard), .. } if guard.is_of(latch))
    }
}
