//! What the pool's queues hold: a task, type-erased, and what to do once it has run.

use std::mem::ManuallyDrop;
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

    /// What the pool owes once the task has run.
    fn role(&self) -> Role {
        Role::Admitted
    }

    /// A scope's task: its guard, taken once, by whoever holds the task's queue entry.
    fn take_scope_guard(&self) -> Option<ScopeGuard> {
        None
    }

    /// Whether this is a task of the scope that waits on `latch` (asked by the entry's
    /// holder).
    fn is_of_scope(&self, _latch: &ScopeLatch) -> bool {
        false
    }
}

/// A task's role in the pool, which its core knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Admitted by the strand: booked as finished when it has run.
    Admitted,
    /// A scope's task.
    Scoped,
    /// The second closure of a `join` made off the pool.
    Joined,
}

/// One entry of a pool queue: one pointer, whatever it holds (see `docs/architecture.md`,
/// "What a queued task costs").
pub(crate) enum JobRef {
    /// A task with a reference-counted core.
    Task(TaskEntry),
    /// The second closure of a `join` made on a pool thread, on the joiner's stack. Its
    /// joiner waits for it, so the entry is never dropped unrun: whoever takes it runs it.
    Forked(ForkRef),
}

/// A queued task's core. When an entry is dropped unrun, the core goes before a scope's
/// guard, so a scope is told only once nothing of its job is left in the pool.
///
/// The core is in a `ManuallyDrop` rather than an `Option` so that the whole entry stays two
/// words (an `Option` would use up the niche that tells the entry's two kinds apart).
pub(crate) struct TaskEntry(ManuallyDrop<Arc<dyn Job>>);

/// What the pool owes a task once it has run, taken from its entry.
pub(crate) enum Kind {
    /// A task admitted by the strand: booked as finished when it has run.
    Admitted,
    /// A task of a scope, which waits for the guard to drop.
    Scoped(ScopeGuard),
    /// The second half of a `join` made off the pool, which its caller waits for itself.
    Joined,
}

impl TaskEntry {
    /// The core, and what is owed once it has run.
    pub(crate) fn into_parts(self) -> (Arc<dyn Job>, Kind) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the core is taken out exactly once.
        let job = unsafe { ManuallyDrop::take(&mut this.0) };
        let kind = kind_of(&*job);
        (job, kind)
    }
}

fn kind_of(job: &dyn Job) -> Kind {
    match job.role() {
        Role::Admitted => Kind::Admitted,
        Role::Joined => Kind::Joined,
        Role::Scoped => match job.take_scope_guard() {
            Some(guard) => Kind::Scoped(guard),
            None => unreachable!("a scope's task is queued once, with its guard"),
        },
    }
}

impl Drop for TaskEntry {
    fn drop(&mut self) {
        // SAFETY: this is the entry's drop, so the core is taken out exactly once (an entry
        // taken apart by `into_parts` is never dropped).
        let job = unsafe { ManuallyDrop::take(&mut self.0) };
        let kind = kind_of(&*job);
        drop(job);
        drop(kind);
    }
}

impl JobRef {
    pub(crate) fn admitted(job: Arc<dyn Job>) -> Self {
        debug_assert_eq!(job.role(), Role::Admitted);
        JobRef::Task(TaskEntry(ManuallyDrop::new(job)))
    }

    /// A job that borrows data for `'scope`: a scope's task (holding its guard) or the
    /// second closure of a `join` made off the pool.
    ///
    /// # Safety
    ///
    /// For a scope's task, the caller must not let `'scope` end before the guard's latch
    /// has counted this entry done, which happens only after the pool has dropped its
    /// reference to the job (when it has run, or when the entry is dropped unrun).
    ///
    /// For a `join`'s closure, before `'scope` ends, and without unwinding before then, the
    /// caller must have seen the job complete (its body run, or dropped by a cancellation)
    /// and taken its output. What is left of the job in the pool after that holds no value
    /// that borrows: the pool can only drop its reference to a core whose stage is empty.
    ///
    /// Either way nothing borrowed for `'scope` is used after it ends, though the queues'
    /// type says `'static`.
    pub(crate) unsafe fn borrowing<'scope>(job: Arc<dyn Job + 'scope>) -> Self {
        debug_assert_ne!(job.role(), Role::Admitted);
        // SAFETY: only the lifetime bound of the trait object changes (same layout); the
        // caller upholds the contract above.
        let job: Arc<dyn Job> =
            unsafe { std::mem::transmute::<Arc<dyn Job + 'scope>, Arc<dyn Job>>(job) };
        JobRef::Task(TaskEntry(ManuallyDrop::new(job)))
    }

    fn job(&self) -> Option<&dyn Job> {
        match self {
            JobRef::Task(TaskEntry(job)) => Some(&***job),
            JobRef::Forked(_) => None,
        }
    }

    /// Whether the entry's task was claimed already, so that running it runs no user code.
    pub(crate) fn is_left_over(&self) -> bool {
        self.job().is_some_and(Job::is_claimed)
    }

    /// Whether this entry is the task whose core is at `core` (compared by address only).
    pub(crate) fn is_task(&self, core: *const ()) -> bool {
        self.job()
            .is_some_and(|job| std::ptr::eq((job as *const dyn Job).cast::<()>(), core))
    }

    /// Whether this entry is a task of the scope that waits on `latch`.
    pub(crate) fn is_of_scope(&self, latch: &ScopeLatch) -> bool {
        self.job().is_some_and(|job| job.is_of_scope(latch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_entry_is_two_words() {
        assert_eq!(
            std::mem::size_of::<JobRef>(),
            2 * std::mem::size_of::<usize>()
        );
    }
}
