//! A scope's latch: the count of its jobs not yet done, and the wake-up of the thread that
//! waits for them. Built on the loom shim: the model below runs every interleaving of the
//! owner and its jobs.

use std::ptr::NonNull;
use std::sync::PoisonError;

use crate::error::Error;
use crate::loom::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};
use crate::loom::thread::{self, Thread};

/// Counts one job of a scope done when dropped.
pub(crate) struct ScopeGuard(NonNull<ScopeLatch>);

// SAFETY: a guard only reaches its latch through `&ScopeLatch`, and `ScopeLatch` is `Sync`.
unsafe impl Send for ScopeGuard {}

impl ScopeGuard {
    /// Whether this guard counts a job of `latch`'s scope.
    pub(crate) fn is_of(&self, latch: &ScopeLatch) -> bool {
        self.0 == NonNull::from(latch)
    }

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
    /// Stands for the latch's memory in the model: a guard reads it where it last touches
    /// the latch, and the model's owner writes it where it frees the latch, so loom fails
    /// if a guard's last touch is not ordered before the owner's free. (Loom switches
    /// threads only at synchronising operations: it catches a touch that follows the
    /// `finished` store across one, such as the unpark, which is where such a bug would be.)
    #[cfg(plait_loom)]
    memory: crate::loom::cell::UnsafeCell<()>,
}

impl ScopeLatch {
    /// A latch for the current thread to wait on.
    pub(crate) fn new() -> Self {
        ScopeLatch {
            pending: AtomicUsize::new(1),
            finished: AtomicBool::new(false),
            owner: thread::current(),
            panic: Mutex::new(None),
            #[cfg(plait_loom)]
            memory: crate::loom::cell::UnsafeCell::new(()),
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
        #[cfg(plait_loom)]
        this.memory.with(|_| ());
        if this.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let owner = this.owner.clone();
            #[cfg(plait_loom)]
            this.memory.with(|_| ());
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

/// The latch of a `join`'s second closure when a thief runs it: the thief sets it once the
/// result is stored; the joiner spins on it, and only if that takes long parks on it.
///
/// Cheap when unused: nothing is allocated and no thread handle is taken until the joiner
/// decides to park. The joiner then leaves its thread handle in the latch *before* it says
/// it sleeps, so that a thief that sees it asleep can take a clone of the handle before it
/// sets the latch: after that store the joiner may return and free the latch (it lives on
/// the joiner's stack), and the thief touches it no more.
pub(crate) struct ForkLatch {
    state: AtomicUsize,
    /// The joiner's thread, written by the joiner before it moves `state` to `SLEEPING` and
    /// read by the thief only after it saw `SLEEPING`.
    owner: crate::loom::cell::UnsafeCell<Option<Thread>>,
}

const UNSET: usize = 0;
const SLEEPING: usize = 1;
const SET: usize = 2;

// SAFETY: `owner` is written only by the joiner while `state` is `UNSET`, and read only by
// the one thief after it saw `SLEEPING` (which the joiner stored after the write, Release,
// and the thief loaded with Acquire); `Thread` is `Send + Sync`.
unsafe impl Sync for ForkLatch {}
// SAFETY: as above.
unsafe impl Send for ForkLatch {}

impl ForkLatch {
    pub(crate) fn new() -> Self {
        ForkLatch {
            state: AtomicUsize::new(UNSET),
            owner: crate::loom::cell::UnsafeCell::new(None),
        }
    }

    /// Whether the thief is done. `Acquire`: a `true` makes what it stored visible.
    pub(crate) fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) == SET
    }

    /// The joiner is about to park: returns `false` if the latch is set already (then it
    /// must not park). Call at most once.
    pub(crate) fn sleepy(&self) -> bool {
        // SAFETY: the state is not `SLEEPING` yet, so the thief does not read `owner`.
        self.owner
            .with_mut(|owner| unsafe { *owner = Some(thread::current()) });
        self.state
            .compare_exchange(UNSET, SLEEPING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The thief is done (its result stored before this call).
    ///
    /// # Safety
    ///
    /// `latch` is live until this call sets it, and this is the thief's last use of it.
    pub(crate) unsafe fn set(latch: *const ForkLatch) {
        // SAFETY: live by the caller's contract, and the joiner waits until `SET`.
        let this = unsafe { &*latch };
        let mut current = this.state.load(Ordering::Acquire);
        loop {
            let owner = if current == SLEEPING {
                // SAFETY: the joiner wrote `owner` before it stored `SLEEPING`, which this
                // thread loaded with Acquire, and writes it no more.
                this.owner.with(|owner| unsafe { (*owner).clone() })
            } else {
                None
            };
            match this.state.compare_exchange_weak(
                current,
                SET,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // The joiner may be gone now: only the clone is touched.
                    if let Some(owner) = owner {
                        owner.unpark();
                    }
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(all(test, plait_loom))]
mod loom_test {
    //! Run with `RUSTFLAGS="--cfg plait_loom" cargo test -p plait --lib --release loom_test`.

    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    use super::ScopeLatch;
    use crate::error::Error;
    use crate::loom::model;

    /// The scope's owner and two jobs: each job writes to data it borrows from the owner's
    /// frame, the first also reports a panic, and each drops its guard. The owner gives up
    /// its share and waits as `Runtime::scope` does. Loom fails the model on a lost wake-up
    /// (the owner parked for good), on a job's write or last touch of the latch that is not
    /// ordered before the owner reads the data and frees the latch, or on a lost panic.
    #[test]
    fn the_owner_wakes_once_every_job_is_done_and_sees_all_they_did() {
        model(|| {
            let latch = Box::new(ScopeLatch::new());
            let borrowed: Arc<[UnsafeCell<u32>; 2]> =
                Arc::new([UnsafeCell::new(0), UnsafeCell::new(0)]);
            let jobs: Vec<_> = (0..2)
                .map(|index| {
                    // SAFETY: the latch is freed below only once it is finished, and no
                    // guard is made after `release_owner`.
                    let guard = unsafe { latch.guard() };
                    let borrowed = Arc::clone(&borrowed);
                    loom::thread::spawn(move || {
                        // SAFETY: each job writes only its own cell; the owner reads them
                        // once the latch is finished.
                        borrowed[index].with_mut(|cell| unsafe { *cell = 1 });
                        if index == 0 {
                            guard.record(Error::Cancelled);
                        }
                        drop(guard);
                    })
                })
                .collect();
            latch.release_owner();
            while !latch.is_finished() {
                loom::thread::park();
            }
            for cell in borrowed.iter() {
                // SAFETY: the jobs are done with their cells (the latch is finished).
                assert_eq!(cell.with(|cell| unsafe { *cell }), 1);
            }
            assert!(matches!(latch.take_panic(), Some(Error::Cancelled)));
            latch.memory.with_mut(|_| ());
            drop(latch);
            for job in jobs {
                job.join().unwrap();
            }
        });
    }

    /// A joiner and the thief of its second closure: the thief writes its result and sets
    /// the latch; the joiner spins a little, then parks. Loom fails the model on a lost
    /// wake-up, or on a result not visible once the latch is set, or on a thief's touch of
    /// the latch after the joiner may have freed it.
    #[test]
    fn a_joiner_that_parks_is_woken_by_the_thief_and_sees_its_result() {
        model(|| {
            let latch = Box::new(super::ForkLatch::new());
            let result = Arc::new(UnsafeCell::new(0u32));
            let latch_at = &*latch as *const super::ForkLatch as usize;
            let thief = {
                let result = Arc::clone(&result);
                loom::thread::spawn(move || {
                    // SAFETY: the joiner reads the result only once the latch is set.
                    result.with_mut(|cell| unsafe { *cell = 7 });
                    // SAFETY: the joiner keeps the latch until it sees it set.
                    unsafe { super::ForkLatch::set(latch_at as *const super::ForkLatch) };
                })
            };
            if !latch.is_set() && latch.sleepy() {
                while !latch.is_set() {
                    loom::thread::park();
                }
            }
            // SAFETY: the latch is set: the thief is done with the result.
            assert_eq!(result.with(|cell| unsafe { *cell }), 7);
            // Stands for freeing the latch: fails if the thief's read of `owner` is not
            // ordered before it.
            latch.owner.with_mut(|_| ());
            drop(latch);
            thief.join().unwrap();
        });
    }

    /// A scope whose closure spawned nothing finishes on the owner's own share.
    #[test]
    fn a_scope_without_jobs_finishes_at_once() {
        model(|| {
            let latch = ScopeLatch::new();
            latch.release_owner();
            assert!(latch.is_finished());
        });
    }
}
