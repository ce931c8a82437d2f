//! A thread-strand task as its handle holds it: one word, the pool's thin reference
//! ([`RawJob`]) with the handle's half of the vtable after the pool's.
//!
//! A task's vtable is a [`TaskVtable`]: the pool's [`JobVtable`] first (`repr(C)`), so the
//! pool reads its half without knowing the rest, then what a handle does (wait, take the
//! output, cancel). Every task reference is made here, so every head points at a
//! `TaskVtable`.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::core::{CancelTask, Task};
use super::state::{Header, Reason};
use crate::pool::job::{Job, JobVtable, RawJob};
use crate::pool::raw::Head;
use crate::{Error, Result};

/// What a handle can do with a task whose type it does not know (beyond its output's).
#[repr(C)]
struct TaskVtable {
    /// First: the pool reads a task's vtable as this.
    job: JobVtable,
    header: unsafe fn(NonNull<Head>) -> NonNull<Header>,
    cancel: unsafe fn(NonNull<Head>, Reason) -> bool,
    run_here: unsafe fn(NonNull<Head>),
    /// Writes `Option<Result<T>>` (the task's output type) to the second pointer.
    take_output: unsafe fn(NonNull<Head>, NonNull<()>),
    take_unobserved_panic: unsafe fn(NonNull<Head>) -> Option<Error>,
}

impl TaskVtable {
    /// The handle's half of the vtable of a task of type `X` with output `T`.
    const fn of<X: Task<T>, T>(job: JobVtable) -> Self {
        TaskVtable {
            job,
            header: header::<X, T>,
            cancel: cancel::<X>,
            run_here: run_here::<X, T>,
            take_output: take_output::<X, T>,
            take_unobserved_panic: take_unobserved_panic::<X, T>,
        }
    }
}

/// An owned reference to a task with output `T`: one word.
pub(crate) struct TaskRef<T> {
    raw: RawJob,
    _output: PhantomData<fn() -> T>,
}

impl<T> TaskRef<T> {
    /// A task the pool runs (a core, or a core with its role), borrowing nothing.
    pub(crate) fn queued<X>(task: X) -> Self
    where
        X: Task<T> + Job + 'static,
    {
        // SAFETY: `X` borrows nothing (`'static`).
        unsafe { Self::queued_borrowing(task) }
    }

    /// As [`queued`](Self::queued), for a task that borrows (a scope's, or a `join`'s).
    ///
    /// # Safety
    ///
    /// Nothing `X` borrows may be used after it ends, though the references' types do not
    /// say what it borrows (the pool's queues take any task):
    ///
    /// - For a scope's task, the caller must not let the borrow end before the guard's
    ///   latch has counted the task's queue entry done, which happens only after the pool
    ///   has let go of its reference (when the task has run, or its entry is dropped unrun).
    /// - For a `join`'s closure, before the borrow ends, and without unwinding before then,
    ///   the caller must have seen the task complete (its body run, or dropped by a
    ///   cancellation) and taken its output. What is left of the task in the pool after
    ///   that holds no value that borrows: the pool can only let go of a core whose stage
    ///   is empty.
    pub(crate) unsafe fn queued_borrowing<X>(task: X) -> Self
    where
        X: Task<T> + Job,
    {
        let vtable: &'static TaskVtable = const { &TaskVtable::of::<X, T>(JobVtable::of::<X>()) };
        // SAFETY: the vtable is made for `X` with its pool half first; the caller vouches
        // for what `X` borrows.
        let raw = unsafe { RawJob::new(task, &vtable.job) };
        TaskRef {
            raw,
            _output: PhantomData,
        }
    }

    /// A task the pool never runs: its output comes from elsewhere (a worker process).
    pub(crate) fn never_queued<X>(task: X) -> Self
    where
        X: Task<T> + 'static,
    {
        let vtable: &'static TaskVtable =
            const { &TaskVtable::of::<X, T>(JobVtable::never_queued::<X>()) };
        // SAFETY: the vtable is made for `X` with its pool half first; `X` borrows nothing.
        let raw = unsafe { RawJob::new(task, &vtable.job) };
        TaskRef {
            raw,
            _output: PhantomData,
        }
    }

    /// Another reference to the task, for a pool queue.
    pub(crate) fn job(&self) -> RawJob {
        self.raw.clone()
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the vtable is the task's and this reference keeps it alive; the header is
        // the task's, so it lives as long as `self`.
        unsafe { (vtable(&self.raw).header)(self.raw.head()).as_ref() }
    }

    /// Cancels the task (see [`CancelTask::cancel`]).
    pub(crate) fn cancel(&self, reason: Reason) -> bool {
        cancel_raw(&self.raw, reason)
    }

    /// Runs the task on the current thread unless someone claimed it already.
    pub(crate) fn run_here(&self) {
        // SAFETY: as in `header`.
        unsafe { (vtable(&self.raw).run_here)(self.raw.head()) }
    }

    /// Moves the output out; `None` if it was taken already.
    ///
    /// # Safety
    ///
    /// As [`Task::take_output`]: the caller saw the task complete and is its one joiner.
    pub(crate) unsafe fn take_output(&self) -> Option<Result<T>> {
        let mut out = MaybeUninit::<Option<Result<T>>>::uninit();
        // SAFETY: the caller's contract is `take_output`'s; `out` has the type the vtable
        // writes, since this reference was made for a task with output `T`.
        unsafe {
            (vtable(&self.raw).take_output)(self.raw.head(), NonNull::from(&mut out).cast());
            out.assume_init()
        }
    }

    /// Disposes of an output no handle will take; returns it if it is a panic.
    ///
    /// # Safety
    ///
    /// As [`Task::take_unobserved_panic`]: [`Header::detach`] returned `true` for the caller.
    pub(crate) unsafe fn take_unobserved_panic(&self) -> Option<Error> {
        // SAFETY: the caller's contract is the vtable function's.
        unsafe { (vtable(&self.raw).take_unobserved_panic)(self.raw.head()) }
    }

    /// The address of the task, as its queue entry holds it.
    pub(crate) fn addr(&self) -> *const () {
        self.raw.addr()
    }

    /// A reference that can only cancel the task.
    pub(crate) fn canceller(&self) -> CancelRef {
        CancelRef(self.raw.clone())
    }
}

/// An owned reference to a task that can cancel it, whatever its output: one word.
#[derive(Clone)]
pub(crate) struct CancelRef(RawJob);

impl CancelRef {
    pub(crate) fn cancel(&self, reason: Reason) -> bool {
        cancel_raw(&self.0, reason)
    }
}

fn cancel_raw(raw: &RawJob, reason: Reason) -> bool {
    // SAFETY: the vtable is the task's and `raw` keeps the task alive.
    unsafe { (vtable(raw).cancel)(raw.head(), reason) }
}

/// The whole vtable of a task made here.
fn vtable(raw: &RawJob) -> &'static TaskVtable {
    let job: *const JobVtable = raw.vtable();
    // SAFETY: every `RawJob` this module hands out (the only ones these functions see) was
    // made with the pool half of a `TaskVtable`, its first field in a `repr(C)` struct, so
    // the pointer to the half is a pointer to the whole.
    unsafe { &*job.cast::<TaskVtable>() }
}

// The handle's half, for a `Cell<X>`. Each function's caller holds a reference to the task
// and uses the vtable made for its type (`TaskVtable::of::<X, T>`).

unsafe fn header<X: Task<T>, T>(head: NonNull<Head>) -> NonNull<Header> {
    // SAFETY: the head is a live `Cell<X>`'s (see above).
    NonNull::from(unsafe { RawJob::value::<X>(head) }.header())
}

unsafe fn cancel<X: CancelTask>(head: NonNull<Head>, reason: Reason) -> bool {
    // SAFETY: as above.
    unsafe { RawJob::value::<X>(head) }.cancel(reason)
}

unsafe fn run_here<X: Task<T>, T>(head: NonNull<Head>) {
    // SAFETY: as above.
    unsafe { RawJob::value::<X>(head) }.run_here();
}

unsafe fn take_output<X: Task<T>, T>(head: NonNull<Head>, out: NonNull<()>) {
    // SAFETY: as above; the caller vouches for `take_output`'s contract and that `out`
    // points at an `Option<Result<T>>` to fill.
    unsafe {
        let output = RawJob::value::<X>(head).take_output();
        out.cast::<Option<Result<T>>>().write(output);
    }
}

unsafe fn take_unobserved_panic<X: Task<T>, T>(head: NonNull<Head>) -> Option<Error> {
    // SAFETY: as above; the caller vouches for the detach.
    unsafe { RawJob::value::<X>(head).take_unobserved_panic() }
}

#[cfg(all(test, not(plait_loom)))]
mod tests {
    use super::*;
    use crate::TaskId;
    use crate::task::core::Core;

    #[test]
    fn a_task_reference_is_one_word() {
        assert_eq!(
            std::mem::size_of::<TaskRef<u64>>(),
            std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<CancelRef>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn a_reference_reaches_the_core_through_the_vtable() {
        let id = TaskId::next();
        let task = TaskRef::queued(Core::new(id, || 40 + 2));
        assert_eq!(task.header().id(), id);
        let job = task.job();
        assert_eq!(job.id(), id);
        assert_eq!(job.addr(), task.addr());
        assert!(!job.is_claimed());
        assert!(!job.run(&|| false).cancelled);
        assert!(task.header().is_complete());
        // SAFETY: complete (checked above), and this is the only joiner.
        assert_eq!(unsafe { task.take_output() }.unwrap().unwrap(), 42);
        // SAFETY: as above.
        assert!(unsafe { task.take_output() }.is_none(), "taken once");
    }

    #[test]
    fn a_canceller_cancels_through_any_reference() {
        let task = TaskRef::queued(Core::new(TaskId::next(), || 1));
        let canceller = task.canceller();
        drop(task.job());
        assert!(canceller.cancel(Reason::Cancelled));
        assert!(task.header().is_complete());
        // SAFETY: complete, one joiner.
        let output = unsafe { task.take_output() };
        assert!(output.unwrap().unwrap_err().is_cancelled());
    }
}
