//! `join` on a pool thread without a heap allocation: the second closure waits in the
//! thread's own deque as a job on the joiner's stack, and is usually popped back and run in
//! place, as rayon's `join` does.
//!
//! A queued [`ForkRef`] is a thin pointer to a [`ForkHeader`] at the start of a
//! `ForkJob<B, RB>` on the joiner's stack. Whoever takes the entry out of a deque owns the
//! closure: the joiner when it pops it back (the common case, with no atomic operation
//! beyond the deque's own), or a thief, which runs it, stores the result and sets the
//! [`ForkLatch`]. The joiner does not leave its frame before one of the two has happened.

use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

pub(crate) use super::latch::ForkLatch;
use super::{Local, job::JobRef};
use crate::loom::cell::UnsafeCell;
use crate::{Error, Result};

/// A `join`'s second closure, as its deque entry points at it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForkRef(NonNull<ForkHeader>);

// SAFETY: a `ForkRef` is only made for a `ForkJob` whose closure and result are `Send`, and
// the job is reached through it by one thread at a time (whoever took the entry).
unsafe impl Send for ForkRef {}

/// The type-erased start of a `ForkJob`.
#[repr(C)]
pub(crate) struct ForkHeader {
    /// Runs the job on a thief; see [`ForkRef::execute`].
    execute: unsafe fn(NonNull<ForkHeader>, bool),
    latch: ForkLatch,
}

/// The second closure of a `join` and its result, on the joiner's stack.
#[repr(C)]
struct ForkJob<B, RB> {
    // First: a pointer to the job is a pointer to its header.
    header: ForkHeader,
    body: UnsafeCell<Option<B>>,
    result: UnsafeCell<Option<Result<RB>>>,
}

impl ForkRef {
    pub(crate) fn header(self) -> NonNull<ForkHeader> {
        self.0
    }

    pub(crate) fn from_header(header: NonNull<ForkHeader>) -> Self {
        ForkRef(header)
    }

    /// Runs the job here, as the thief that took its entry from a deque, and sets its latch.
    /// With `cancelling` (the strand is shutting down) the closure is dropped unrun and the
    /// join reports the cancellation.
    ///
    /// # Safety
    ///
    /// The caller took this entry out of a deque (so it owns the job's closure), and calls
    /// this once; it must not touch the job afterwards.
    pub(crate) unsafe fn execute(self, cancelling: bool) {
        // SAFETY: the header is live while the entry is unexecuted (the joiner waits for the
        // latch), and the caller's contract gives it the job.
        unsafe { (self.0.as_ref().execute)(self.0, cancelling) }
    }
}

/// [`ForkHeader::execute`] for a `ForkJob<B, RB>`.
///
/// # Safety
///
/// As [`ForkRef::execute`]; `header` starts a `ForkJob<B, RB>`.
unsafe fn execute<B, RB>(header: NonNull<ForkHeader>, cancelling: bool)
where
    B: FnOnce() -> RB,
{
    // SAFETY: `ForkJob` is `repr(C)` with its header first, and the caller's contract says
    // this header starts a live `ForkJob<B, RB>` that is ours to run.
    let job = unsafe { header.cast::<ForkJob<B, RB>>().as_ref() };
    // SAFETY: ours alone (the entry was taken from the deque once, by us).
    let body = job.body.with_mut(|body| unsafe { (*body).take() });
    let result = match body {
        Some(body) if !cancelling => {
            panic::catch_unwind(AssertUnwindSafe(body)).map_err(Error::from_panic)
        }
        Some(body) => {
            if let Err(message) = crate::error::catch_panic(|| drop(body)) {
                tracing::error!(%message, "dropping a cancelled join's closure panicked");
            }
            Err(Error::Cancelled)
        }
        None => unreachable!("a join's second closure was taken twice"),
    };
    // SAFETY: as for the body; the joiner reads the result only once the latch is set.
    job.result.with_mut(|slot| unsafe { *slot = Some(result) });
    // SAFETY: the joiner keeps the job alive until the latch is set; this is our last touch.
    unsafe { ForkLatch::set(&job.header.latch) };
}

/// How a joiner waits for the thief of its second closure: given the latch the thief sets,
/// and what tells the entry apart in a deque (it may still be queued below tasks `a` left).
pub(crate) type WaitForThief<'w> = &'w dyn Fn(&ForkLatch, &dyn Fn(&JobRef) -> bool);

/// Runs `a` here and `b` in parallel if another thread takes it, on `local`'s pool thread;
/// returns both results once both have run.
///
/// The caller must not let this unwind (an unexpected panic here must abort): until `b` has
/// run, a queue entry points into this frame.
pub(super) fn join<A, B, RA, RB>(
    local: &Local,
    a: A,
    b: B,
    wait: WaitForThief<'_>,
) -> Result<(RA, RB)>
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job = ForkJob {
        header: ForkHeader {
            execute: execute::<B, RB>,
            latch: ForkLatch::new(),
        },
        body: UnsafeCell::new(Some(b)),
        result: UnsafeCell::new(None),
    };
    let fork = ForkRef(NonNull::from(&job.header));
    local.deque.push(JobRef::forked(fork.header().cast()));
    local.shared.sleep.notify_optional();
    let ra = panic::catch_unwind(AssertUnwindSafe(a)).map_err(Error::from_panic);
    let rb = match local.deque.pop() {
        // Not stolen: run it here, with no atomic operation beyond the pop.
        Some(popped) if popped.is_fork(fork.header().cast()) => {
            // SAFETY: the entry was taken back from the deque: nobody else has the body.
            let body = job.body.with_mut(|body| unsafe { (*body).take() });
            let body = body.unwrap_or_else(|| unreachable!("the entry was queued once"));
            if local.shared.context.strand.is_cancelling() {
                if let Err(message) = crate::error::catch_panic(|| drop(body)) {
                    tracing::error!(%message, "dropping a cancelled join's closure panicked");
                }
                Err(Error::Cancelled)
            } else {
                panic::catch_unwind(AssertUnwindSafe(body)).map_err(Error::from_panic)
            }
        }
        other => {
            if let Some(other) = other {
                // `a` left a task of its own above the entry: it goes back, in its place.
                local.deque.push(other);
            }
            wait(&job.header.latch, &|queued: &JobRef| {
                queued.is_fork(fork.header().cast())
            });
            // SAFETY: the latch is set: the thief stored the result and is done with it.
            let result = job.result.with_mut(|slot| unsafe { (*slot).take() });
            result.unwrap_or_else(|| unreachable!("a thief sets the latch after the result"))
        }
    };
    Ok((ra?, rb?))
}
