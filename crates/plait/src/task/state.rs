//! The completion protocol of one task: who owns its output, and who must be woken.
//!
//! One atomic word carries the whole protocol, in the manner of tokio's task state:
//!
//! * `CLAIMED`: the task's body has been taken, by the worker that runs it or by a canceller
//!   that stops it before it starts. Whoever sets it owns the task's stage until `COMPLETE`.
//! * `COMPLETE`: the output (or the error that replaced it) is stored and published.
//! * `CANCELLED` (and `TIMED_OUT`, its reason): a cancellation was requested before `COMPLETE`.
//!   The completer then stores the cancellation instead of the output, so `cancel` returning
//!   `true` and the handle reporting the cancellation are one and the same event.
//! * `WAITER`: the waiter slot holds a waker that the completer must wake.
//! * `DETACHED`: the handle is gone; whichever of `DETACHED` and `COMPLETE` comes second owns
//!   the output and disposes of it.
//!
//! Access to the waiter slot:
//! * `WAITER` clear and `COMPLETE` clear: the joiner (the one owner of the handle) has
//!   exclusive access.
//! * `WAITER` set: the joiner and, once `COMPLETE` is set, the completer have shared access;
//!   nobody writes. The joiner regains exclusive access by clearing `WAITER`, which it can
//!   only do while `COMPLETE` is clear.
//!
//! The slot's contents are dropped with the header.

use std::sync::Arc;
use std::task::{Wake, Waker};

use crate::Error;
use crate::loom::cell::UnsafeCell;
use crate::loom::sync::{AtomicUsize, Ordering};
use crate::loom::thread::{Thread, current};

const CLAIMED: usize = 1 << 0;
const COMPLETE: usize = 1 << 1;
const CANCELLED: usize = 1 << 2;
const TIMED_OUT: usize = 1 << 3;
const WAITER: usize = 1 << 4;
const DETACHED: usize = 1 << 5;

/// Why a task is being cancelled; decides the error its handle reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Reported as [`Error::Cancelled`].
    Cancelled,
    /// Reported as [`Error::TimedOut`].
    TimedOut,
}

impl Reason {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Reason::Cancelled => Error::Cancelled,
            Reason::TimedOut => Error::TimedOut,
        }
    }

    fn bits(self) -> usize {
        match self {
            Reason::Cancelled => CANCELLED,
            Reason::TimedOut => CANCELLED | TIMED_OUT,
        }
    }

    fn from_bits(state: usize) -> Self {
        if state & TIMED_OUT != 0 {
            Reason::TimedOut
        } else {
            Reason::Cancelled
        }
    }
}

/// What a cancellation request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// The task had already completed; nothing changed.
    TooLate,
    /// A cancellation had already been requested.
    Already,
    /// The task is running; it was asked to stop and will report the cancellation.
    Requested,
    /// The task had not started: the caller now owns its stage and must complete it.
    Claimed,
}

impl Cancel {
    /// Whether the task's handle will report the cancellation.
    pub(crate) fn took_effect(self) -> bool {
        self != Cancel::TooLate
    }
}

/// A waker that unparks `thread`: how a thread blocked in `join` waits for a task.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker for the current thread, for blocking waits.
pub(crate) fn thread_waker() -> Waker {
    Waker::from(Arc::new(ThreadWaker(current())))
}

/// What the completer learned when it published the output.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    /// The handle was dropped first: the completer owns the output.
    pub(crate) detached: bool,
    /// A cancellation replaced the output.
    pub(crate) cancelled: bool,
}

/// The state word and waiter slot of one task.
pub(crate) struct Header {
    /// The flags above in the low bits; on 64-bit targets the task's id above them (ids
    /// never reach 2^58), which saves a word in every task.
    state: AtomicUsize,
    waiter: UnsafeCell<Option<Waker>>,
    #[cfg(not(target_pointer_width = "64"))]
    id: crate::TaskId,
}

/// Where the id starts in the state word.
#[cfg(target_pointer_width = "64")]
const ID_SHIFT: u32 = 6;

// SAFETY: the waiter slot is only touched under the access rules in the module docs, which the
// state word enforces; a `Waker` is `Send + Sync`.
unsafe impl Send for Header {}
// SAFETY: as above.
unsafe impl Sync for Header {}

impl Header {
    pub(crate) fn new(id: crate::TaskId) -> Self {
        #[cfg(target_pointer_width = "64")]
        let state = usize::try_from(id.as_u64() << ID_SHIFT).unwrap_or(0);
        #[cfg(not(target_pointer_width = "64"))]
        let state = 0;
        Header {
            state: AtomicUsize::new(state),
            waiter: UnsafeCell::new(None),
            #[cfg(not(target_pointer_width = "64"))]
            id,
        }
    }

    /// The task's id. Every operation on the state word keeps its id bits.
    pub(crate) fn id(&self) -> crate::TaskId {
        #[cfg(target_pointer_width = "64")]
        {
            crate::TaskId::from_u64((self.state.load(Ordering::Relaxed) >> ID_SHIFT) as u64)
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            self.id
        }
    }

    /// The worker claims the body to run it. Returns `false` if a canceller claimed it first,
    /// in which case the worker must not touch the stage.
    pub(crate) fn claim_to_run(&self) -> bool {
        self.state.fetch_or(CLAIMED, Ordering::Acquire) & CLAIMED == 0
    }

    /// Requests cancellation. On [`Cancel::Claimed`] the caller owns the stage and must store
    /// the cancellation and call [`complete`](Self::complete).
    pub(crate) fn cancel(&self, reason: Reason) -> Cancel {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & COMPLETE != 0 {
                return Cancel::TooLate;
            }
            if current & CANCELLED != 0 {
                return Cancel::Already;
            }
            let (next, outcome) = if current & CLAIMED == 0 {
                (current | CLAIMED | reason.bits(), Cancel::Claimed)
            } else {
                (current | reason.bits(), Cancel::Requested)
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return outcome,
                Err(actual) => current = actual,
            }
        }
    }

    /// Whether the body was claimed, to run or to be dropped by a canceller.
    pub(crate) fn is_claimed(&self) -> bool {
        self.state.load(Ordering::Relaxed) & CLAIMED != 0
    }

    /// Whether a cancellation has been requested: what a running task checks.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Relaxed) & CANCELLED != 0
    }

    /// Whether the output is published. `Acquire`: a `true` makes the output visible.
    pub(crate) fn is_complete(&self) -> bool {
        self.state.load(Ordering::Acquire) & COMPLETE != 0
    }

    /// Publishes the output the claimer has stored, and wakes the waiter.
    ///
    /// If a cancellation arrived first, `replace` is called once with the reason, before
    /// publication, and must store it in place of the output.
    pub(crate) fn complete(&self, mut replace: impl FnMut(Reason)) -> Completion {
        let mut current = self.state.load(Ordering::Acquire);
        let mut replaced = false;
        loop {
            debug_assert!(current & CLAIMED != 0 && current & COMPLETE == 0);
            if current & CANCELLED != 0 && !replaced {
                replace(Reason::from_bits(current));
                replaced = true;
            }
            match self.state.compare_exchange_weak(
                current,
                current | COMPLETE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if current & WAITER != 0 {
            self.waiter.with(|slot| {
                // SAFETY: WAITER and COMPLETE are both set, so the slot is shared and
                // read-only: the joiner can no longer clear WAITER to write it.
                if let Some(waker) = unsafe { &*slot } {
                    waker.wake_by_ref();
                }
            });
        }
        Completion {
            detached: current & DETACHED != 0,
            cancelled: replaced,
        }
    }

    /// Registers `waker` to be woken at completion. Only the handle's owner calls this.
    ///
    /// Returns `false` if the task is already complete: read the output now.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        let current = self.state.load(Ordering::Acquire);
        if current & COMPLETE != 0 {
            return false;
        }
        if current & WAITER != 0 {
            let same = self.waiter.with(|slot| {
                // SAFETY: WAITER is set, so the slot is shared and read-only for everyone.
                unsafe { &*slot }
                    .as_ref()
                    .is_some_and(|w| w.will_wake(waker))
            });
            if same {
                return true;
            }
            if !self.clear_waiter_bit() {
                return false;
            }
        }
        // SAFETY: WAITER and COMPLETE were both clear when we last looked (or we cleared
        // WAITER while COMPLETE was clear), so we have exclusive access: the completer only
        // reads the slot if it finds WAITER set when it sets COMPLETE.
        self.waiter
            .with_mut(|slot| unsafe { *slot = Some(waker.clone()) });
        self.set_waiter_bit()
    }

    /// Marks the handle as gone. Returns `true` if the task had completed: the caller then
    /// owns the output.
    pub(crate) fn detach(&self) -> bool {
        self.state.fetch_or(DETACHED, Ordering::AcqRel) & COMPLETE != 0
    }

    fn set_waiter_bit(&self) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & COMPLETE != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                current,
                current | WAITER,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn clear_waiter_bit(&self) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if current & COMPLETE != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                current,
                current & !WAITER,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}
