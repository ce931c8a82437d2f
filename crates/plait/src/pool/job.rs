//! What the pool's queues hold: a task, type-erased, and what to do once it has run.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;

pub(crate) use super::latch::{ScopeGuard, ScopeLatch};
pub(crate) use super::raw::{Job, JobVtable, Ran, RawJob, Role};

/// One entry of a pool queue: one word, whatever it holds (see `docs/architecture.md`,
/// "What a queued thread task costs"). The low bit of the pointer tells the two kinds apart
/// (both point at something aligned to a word):
///
/// * clear: a task with a reference-counted core, whose reference the entry owns
///   ([`RawJob`]). When such an entry is dropped unrun, the core goes before a scope's
///   guard, so a scope is told only once nothing of its job is left in the pool.
/// * set: the second closure of a `join` made on a pool thread, on the joiner's stack
///   (a pointer to its header, `pool/fork.rs`). Its joiner waits for it, so the entry is
///   never dropped unrun: whoever takes it runs it.
pub(crate) struct JobRef(NonNull<u8>);

// SAFETY: either kind is `Send` (a `RawJob`, or a `join`'s closure, reached by one thread at
// a time: whoever took the entry).
unsafe impl Send for JobRef {}

/// The bit of a [`JobRef`] that marks a `join`'s second closure.
const FORKED: usize = 1;

/// A queue entry taken apart.
pub(crate) enum Entry {
    /// A task, and what is owed once it has run.
    Task(RawJob, Kind),
    /// The second closure of a `join` made on a pool thread: a pointer to its header.
    Forked(NonNull<()>),
}

/// What the pool owes a task once it has run, taken from its entry.
pub(crate) enum Kind {
    /// A task admitted by the strand: booked as finished when it has run.
    Admitted,
    /// A task of a scope, which waits for the guard to drop.
    Scoped(ScopeGuard),
    /// The second half of a `join` made off the pool, which its caller waits for itself.
    Joined,
}

fn kind_of(job: &RawJob) -> Kind {
    match job.role() {
        Role::Admitted => Kind::Admitted,
        Role::Joined => Kind::Joined,
        Role::Scoped => match job.take_scope_guard() {
            Some(guard) => Kind::Scoped(guard),
            None => unreachable!("a scope's task is queued once, with its guard"),
        },
    }
}

impl JobRef {
    /// An entry for a task (its role is the task's own: see [`Job::role`]).
    pub(crate) fn task(job: RawJob) -> Self {
        let head = job.into_head().cast::<u8>();
        debug_assert_eq!(
            head.addr().get() & FORKED,
            0,
            "a task's head is word-aligned"
        );
        JobRef(head)
    }

    /// An entry for the second closure of a `join` made on a pool thread.
    pub(crate) fn forked(header: NonNull<()>) -> Self {
        let header = header.cast::<u8>();
        debug_assert_eq!(
            header.addr().get() & FORKED,
            0,
            "a fork's header is word-aligned"
        );
        // SAFETY: the header is more than a byte long, so one byte in is within it.
        JobRef(unsafe { header.byte_add(FORKED) })
    }

    /// The `join`'s second closure, if that is what the entry holds.
    fn as_forked(&self) -> Option<NonNull<()>> {
        if self.0.addr().get() & FORKED == 0 {
            return None;
        }
        // SAFETY: the bit is set, so `forked` made this pointer one byte into a header.
        let header = unsafe { self.0.byte_sub(FORKED) };
        Some(header.cast())
    }

    /// The task the entry holds, borrowed, if it holds one.
    fn with_task<R>(&self, f: impl FnOnce(&RawJob) -> R) -> Option<R> {
        if self.0.addr().get() & FORKED != 0 {
            return None;
        }
        // SAFETY: a clear bit means the entry owns a reference to a task, made by `task`;
        // the copy is never dropped, so the entry keeps its reference.
        let job = ManuallyDrop::new(unsafe { RawJob::from_head(self.0.cast()) });
        Some(f(&job))
    }

    /// Takes the entry apart: the task and what is owed once it has run, or the fork.
    pub(crate) fn into_entry(self) -> Entry {
        let this = ManuallyDrop::new(self);
        if let Some(fork) = this.as_forked() {
            return Entry::Forked(fork);
        }
        // SAFETY: a clear bit means the entry owns a reference to a task, made by `task`,
        // which moves to the `RawJob` here (the entry is not dropped).
        let job = unsafe { RawJob::from_head(this.0.cast()) };
        let kind = kind_of(&job);
        Entry::Task(job, kind)
    }

    /// Whether this entry is the `join`'s second closure whose header is at `header`.
    pub(crate) fn is_fork(&self, header: NonNull<()>) -> bool {
        self.as_forked() == Some(header)
    }

    /// Whether the entry's task was claimed already, so that running it runs no user code.
    pub(crate) fn is_left_over(&self) -> bool {
        self.with_task(RawJob::is_claimed).unwrap_or(false)
    }

    /// Whether this entry is the task at `task` (compared by address only).
    pub(crate) fn is_task(&self, task: *const ()) -> bool {
        self.with_task(|job| std::ptr::eq(job.addr(), task))
            .unwrap_or(false)
    }

    /// Whether this entry is a task of the scope that waits on `latch`.
    pub(crate) fn is_of_scope(&self, latch: &ScopeLatch) -> bool {
        self.with_task(|job| job.is_of_scope(latch))
            .unwrap_or(false)
    }
}

impl Drop for JobRef {
    fn drop(&mut self) {
        match self.as_forked() {
            // Never dropped unrun in practice (its joiner waits for whoever takes it); if it
            // were, the joiner would still own its closure.
            Some(_) => {}
            None => {
                // SAFETY: the entry owns a reference to a task (a clear bit), given up here.
                let job = unsafe { RawJob::from_head(self.0.cast()) };
                let kind = kind_of(&job);
                drop(job);
                drop(kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_entry_is_one_word() {
        assert_eq!(std::mem::size_of::<JobRef>(), std::mem::size_of::<usize>());
    }
}
