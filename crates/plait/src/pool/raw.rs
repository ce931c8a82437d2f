//! A task behind one pointer: its reference count and its vtable at the front of its
//! allocation, as tokio's `RawTask` has them, so that a queue entry and a handle are one word
//! each (see `docs/architecture.md`, "What a queued thread task costs").
//!
//! `Arc<dyn Job>` would take two words a reference and a word of weak count in the
//! allocation. Here a [`RawJob`] is a thin pointer to a [`Head`]: the vtable word, then the
//! count. The pool's half of the vtable ([`JobVtable`]) comes first; the task layer extends it
//! with the handle's half (`task::raw`), in the same `repr(C)` way, so the pool never needs
//! to know what a handle does. What a task tells the pool ([`Job`]) is defined here, with
//! the vtable made from it.

use std::ptr::NonNull;

use super::latch::{ScopeGuard, ScopeLatch};
use crate::error::Error;
use crate::id::TaskId;
use crate::loom::sync::{AtomicUsize, Ordering, fence};

/// How a run ended, for the strand's count.
#[derive(Debug, Default)]
pub(crate) struct Ran {
    /// The task was stopped, or reports a cancellation, rather than its output.
    pub(crate) cancelled: bool,
    /// The task panicked and its handle was already gone: the panic must be reported
    /// somewhere else so it is not lost.
    pub(crate) unobserved_panic: Option<Error>,
}

/// A task the pool can run: what a thread-strand task's core tells the pool through its
/// vtable ([`JobVtable::of`](super::raw::JobVtable::of)).
pub(crate) trait Job: Send + Sync {
    /// Runs the task (or skips it, if it was cancelled before it started).
    /// `strand_cancelled` says whether the strand is shutting down.
    fn run(&self, strand_cancelled: &dyn Fn() -> bool) -> Ran;

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

/// The front of every task's allocation: a pointer to the task is a pointer to its head.
#[repr(C)]
pub(crate) struct Head {
    vtable: &'static JobVtable,
    /// The owners: handles, queue entries, cancel handles.
    refs: AtomicUsize,
}

/// A task and its head, in one allocation.
#[repr(C)]
struct Cell<X> {
    head: Head,
    value: X,
}

/// What the pool can do with a task whose type it does not know. Each function takes the
/// task's head, and may be called only while the caller holds a reference to the task.
#[repr(C)]
pub(crate) struct JobVtable {
    /// Drops the task and frees its allocation; called once, by the last owner.
    dealloc: unsafe fn(NonNull<Head>),
    run: unsafe fn(NonNull<Head>, &dyn Fn() -> bool) -> Ran,
    id: unsafe fn(NonNull<Head>) -> TaskId,
    is_claimed: unsafe fn(NonNull<Head>) -> bool,
    role: unsafe fn(NonNull<Head>) -> Role,
    take_scope_guard: unsafe fn(NonNull<Head>) -> Option<ScopeGuard>,
    is_of_scope: unsafe fn(NonNull<Head>, &ScopeLatch) -> bool,
}

impl JobVtable {
    /// The pool's half of the vtable of a `Cell<X>`, for a task the pool queues.
    pub(crate) const fn of<X: Job>() -> Self {
        JobVtable {
            dealloc: dealloc::<X>,
            run: run::<X>,
            id: id::<X>,
            is_claimed: is_claimed::<X>,
            role: role::<X>,
            take_scope_guard: take_scope_guard::<X>,
            is_of_scope: is_of_scope::<X>,
        }
    }

    /// The pool's half for a task that is never queued on the pool (a process task, whose
    /// output comes from a worker process): it only ever needs freeing.
    pub(crate) const fn never_queued<X>() -> Self {
        JobVtable {
            dealloc: dealloc::<X>,
            run: |_, _| unreachable!("a task that is never queued was run by the pool"),
            id: |_| unreachable!("a task that is never queued was asked its id by the pool"),
            is_claimed: |_| unreachable!("a task that is never queued was met in a queue"),
            role: |_| unreachable!("a task that is never queued was met in a queue"),
            take_scope_guard: |_| None,
            is_of_scope: |_, _| false,
        }
    }
}

/// An owned reference to a task whose type is erased: one word.
pub(crate) struct RawJob(NonNull<Head>);

// SAFETY: a `RawJob` is only made for a value that is `Send + Sync` (see `RawJob::new`), and
// what it does with it through the vtable (run, inspect, free) is what an `Arc` of it may.
unsafe impl Send for RawJob {}
// SAFETY: as above.
unsafe impl Sync for RawJob {}

impl RawJob {
    /// Allocates `value` behind a head with one reference.
    ///
    /// # Safety
    ///
    /// `vtable` must be made for `X` ([`JobVtable::of::<X>`] or
    /// [`JobVtable::never_queued::<X>`], alone or first in a `repr(C)` extension of it), and
    /// whatever `X` borrows must outlive every use of the task through any reference to it
    /// (the types say `'static` from here on).
    pub(crate) unsafe fn new<X: Send + Sync>(value: X, vtable: &'static JobVtable) -> Self {
        let cell = Box::new(Cell {
            head: Head {
                vtable,
                refs: AtomicUsize::new(1),
            },
            value,
        });
        RawJob(NonNull::from(Box::leak(cell)).cast())
    }

    /// The task's value, as a reference that lives as long as the reference to the head.
    ///
    /// # Safety
    ///
    /// `head` is the head of a live `Cell<X>`, and the caller holds a reference to it for `'a`.
    pub(crate) unsafe fn value<'a, X>(head: NonNull<Head>) -> &'a X {
        // SAFETY: `Cell` is `repr(C)` with its head first, and the caller's contract says it
        // is a live `Cell<X>`, which is only ever reached through shared references.
        unsafe { &(*head.cast::<Cell<X>>().as_ptr()).value }
    }

    pub(crate) fn head(&self) -> NonNull<Head> {
        self.0
    }

    /// Takes over the reference that `head` stood for (see [`RawJob::into_head`]).
    ///
    /// # Safety
    ///
    /// `head` came from `into_head` (or `head` of a `RawJob` that was then forgotten), and
    /// this takes over that one reference, once.
    pub(crate) unsafe fn from_head(head: NonNull<Head>) -> Self {
        RawJob(head)
    }

    /// Gives up this value without letting go of its reference, which the returned pointer
    /// now stands for until [`RawJob::from_head`] takes it back.
    pub(crate) fn into_head(self) -> NonNull<Head> {
        std::mem::ManuallyDrop::new(self).0
    }

    /// The vtable the task was made with.
    pub(crate) fn vtable(&self) -> &'static JobVtable {
        // SAFETY: the head lives while this reference does.
        unsafe { self.0.as_ref() }.vtable
    }

    /// The address of the task, to tell it apart from others.
    pub(crate) fn addr(&self) -> *const () {
        self.0.as_ptr().cast_const().cast()
    }

    /// Runs the task (see [`Job::run`]).
    pub(crate) fn run(&self, strand_cancelled: &dyn Fn() -> bool) -> Ran {
        // SAFETY: the vtable is the task's, and this reference keeps it alive.
        unsafe { (self.vtable().run)(self.0, strand_cancelled) }
    }

    pub(crate) fn id(&self) -> TaskId {
        // SAFETY: as above.
        unsafe { (self.vtable().id)(self.0) }
    }

    pub(crate) fn is_claimed(&self) -> bool {
        // SAFETY: as above.
        unsafe { (self.vtable().is_claimed)(self.0) }
    }

    pub(crate) fn role(&self) -> Role {
        // SAFETY: as above.
        unsafe { (self.vtable().role)(self.0) }
    }

    pub(crate) fn take_scope_guard(&self) -> Option<ScopeGuard> {
        // SAFETY: as above.
        unsafe { (self.vtable().take_scope_guard)(self.0) }
    }

    pub(crate) fn is_of_scope(&self, latch: &ScopeLatch) -> bool {
        // SAFETY: as above.
        unsafe { (self.vtable().is_of_scope)(self.0, latch) }
    }
}

/// Past this many references the count could wrap: abort, as `Arc` does.
const MAX_REFS: usize = isize::MAX as usize;

impl Clone for RawJob {
    fn clone(&self) -> Self {
        // SAFETY: the head lives while this reference does.
        let head = unsafe { self.0.as_ref() };
        // Relaxed, as `Arc`'s: a new reference is made from an existing one, which already
        // keeps the task alive and its contents visible.
        let old = head.refs.fetch_add(1, Ordering::Relaxed);
        if old > MAX_REFS {
            std::process::abort();
        }
        RawJob(self.0)
    }
}

impl Drop for RawJob {
    fn drop(&mut self) {
        // SAFETY: the head lives until the count reaches zero, which only this can cause.
        let head = unsafe { self.0.as_ref() };
        let vtable = head.vtable;
        // Release: whatever this owner did to the task happens before the free. Acquire (the
        // fence) for the last owner: it sees what every other owner did before it frees.
        if head.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: this was the last reference, and the vtable is the task's.
        unsafe { (vtable.dealloc)(self.0) }
    }
}

/// [`JobVtable::dealloc`] for a `Cell<X>`.
///
/// # Safety
///
/// `head` is the head of a `Cell<X>` made by [`RawJob::new`] that nothing refers to any more.
unsafe fn dealloc<X>(head: NonNull<Head>) {
    // SAFETY: the cell was leaked from a `Box<Cell<X>>` and nothing else refers to it.
    drop(unsafe { Box::from_raw(head.cast::<Cell<X>>().as_ptr()) });
}

unsafe fn run<X: Job>(head: NonNull<Head>, strand_cancelled: &dyn Fn() -> bool) -> Ran {
    // SAFETY: a vtable made by `JobVtable::of::<X>` is only put in a `Cell<X>`'s head, and
    // the caller holds a reference (the vtable's contract). Likewise below.
    unsafe { RawJob::value::<X>(head) }.run(strand_cancelled)
}

unsafe fn id<X: Job>(head: NonNull<Head>) -> TaskId {
    // SAFETY: as in `run`.
    unsafe { RawJob::value::<X>(head) }.id()
}

unsafe fn is_claimed<X: Job>(head: NonNull<Head>) -> bool {
    // SAFETY: as in `run`.
    unsafe { RawJob::value::<X>(head) }.is_claimed()
}

unsafe fn role<X: Job>(head: NonNull<Head>) -> Role {
    // SAFETY: as in `run`.
    unsafe { RawJob::value::<X>(head) }.role()
}

unsafe fn take_scope_guard<X: Job>(head: NonNull<Head>) -> Option<ScopeGuard> {
    // SAFETY: as in `run`.
    unsafe { RawJob::value::<X>(head) }.take_scope_guard()
}

unsafe fn is_of_scope<X: Job>(head: NonNull<Head>, latch: &ScopeLatch) -> bool {
    // SAFETY: as in `run`.
    unsafe { RawJob::value::<X>(head) }.is_of_scope(latch)
}

#[cfg(all(test, not(plait_loom)))]
mod tests {
    use std::sync::atomic::AtomicUsize as StdCount;
    use std::sync::{Arc, atomic::Ordering as StdOrdering};

    use super::*;

    /// Counts its drops.
    struct Counted(Arc<StdCount>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, StdOrdering::SeqCst);
        }
    }

    fn counted() -> (RawJob, Arc<StdCount>) {
        let drops = Arc::new(StdCount::new(0));
        // SAFETY: the vtable is made for the value's type, which borrows nothing.
        let raw = unsafe {
            RawJob::new(
                Counted(Arc::clone(&drops)),
                const { &JobVtable::never_queued::<Counted>() },
            )
        };
        (raw, drops)
    }

    #[test]
    fn a_reference_is_one_word() {
        assert_eq!(std::mem::size_of::<RawJob>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Option<RawJob>>(),
            std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<Head>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn the_last_reference_frees_the_task_once() {
        let (raw, drops) = counted();
        let clones: Vec<RawJob> = (0..5).map(|_| raw.clone()).collect();
        drop(raw);
        assert_eq!(drops.load(StdOrdering::SeqCst), 0);
        for (i, clone) in clones.into_iter().enumerate() {
            assert_eq!(drops.load(StdOrdering::SeqCst), 0, "after {i} drops");
            drop(clone);
        }
        assert_eq!(drops.load(StdOrdering::SeqCst), 1);
    }

    #[test]
    fn references_dropped_on_many_threads_free_the_task_once() {
        for _ in 0..200 {
            let (raw, drops) = counted();
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let mine = raw.clone();
                    std::thread::spawn(move || {
                        let more = mine.clone();
                        drop(mine);
                        drop(more);
                    })
                })
                .collect();
            drop(raw);
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(drops.load(StdOrdering::SeqCst), 1);
        }
    }

    #[test]
    fn clones_point_at_the_same_task() {
        let (raw, _drops) = counted();
        assert_eq!(raw.addr(), raw.clone().addr());
        let (other, _) = counted();
        assert_ne!(raw.addr(), other.addr());
    }
}

#[cfg(all(test, plait_loom))]
mod loom_test {
    //! Run with `RUSTFLAGS="--cfg plait_loom" cargo test -p plait --lib --release loom_test`.
    //!
    //! The model: owners on several threads each write the task's memory and let go of
    //! their reference. loom fails on a write that does not happen before the free (the
    //! last owner's drop reads the memory) and on a free that happens twice or never.

    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;

    use super::{JobVtable, RawJob};
    use crate::loom::model;

    /// A task's memory: written by every owner, read when it is freed.
    struct Memory {
        writes: UnsafeCell<usize>,
        frees: Arc<AtomicUsize>,
    }

    // SAFETY: the test orders the writes; loom checks every access against that order.
    unsafe impl Sync for Memory {}

    impl Drop for Memory {
        fn drop(&mut self) {
            // SAFETY: the free is the last use; loom checks it follows every write.
            self.writes.with(|writes| assert_eq!(unsafe { *writes }, 2));
            self.frees.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Writes the memory as an owner would, through its own reference.
    fn write(raw: &RawJob) {
        // SAFETY: `raw` is a reference to a live `Cell<Memory>`. The test orders the two
        // writes (one before the other thread starts); loom checks the free against both.
        let memory = unsafe { RawJob::value::<Memory>(raw.head()) };
        memory.writes.with_mut(|writes| unsafe { *writes += 1 });
    }

    #[test]
    fn the_last_owner_sees_every_owners_writes_and_frees_once() {
        model(|| {
            let frees = Arc::new(AtomicUsize::new(0));
            // SAFETY: the vtable is made for `Memory`, which borrows nothing.
            let raw = unsafe {
                RawJob::new(
                    Memory {
                        writes: UnsafeCell::new(0),
                        frees: Arc::clone(&frees),
                    },
                    const { &JobVtable::never_queued::<Memory>() },
                )
            };
            write(&raw);
            let other = raw.clone();
            let thread = thread::spawn(move || {
                write(&other);
                drop(other);
            });
            // The first write is ordered before the spawn; the second, on the other thread,
            // reaches the free only through the count, whichever drop is the last.
            drop(raw);
            thread.join().unwrap();
            assert_eq!(frees.load(Ordering::SeqCst), 1);
        });
    }
}
