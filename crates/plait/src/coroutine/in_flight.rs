//! Counting coroutines in flight, and out when they finish, without a reference count per
//! task.
//!
//! Each coroutine carries a guard that counts it finished when its future is dropped.
//! HeldSlot an `Arc` of the strand's state in every guard would bounce the count's cache line
//! between the spawning thread and the workers on every task; instead the guard holds the
//! strand's number, and each tokio thread keeps the strand's state in a thread-local, set
//! when the thread starts. A future dropped on any other thread (spawned onto a runtime that
//! had shut down, say) finds its strand through a registry of weak references.

use std::cell::OnceCell;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::strand::{HeldSlot, StrandState};

thread_local! {
    /// The strands whose coroutines run on this thread, by number: the coroutine strand,
    /// and the process strand whose tasks wait here for their workers.
    static LOCAL: OnceCell<Strands> = const { OnceCell::new() };
}

/// Strands by number.
pub(crate) type Strands = Arc<[(u64, Arc<StrandState>)]>;

/// Strands that may have coroutines in flight, by number; dead entries are pruned as new
/// strands register.
static REGISTRY: Mutex<Vec<(u64, Weak<StrandState>)>> = Mutex::new(Vec::new());

/// Registers a strand whose tasks run as coroutines and returns its number (its key).
pub(crate) fn register(state: &Arc<StrandState>) -> u64 {
    let number = state.key();
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    registry.retain(|(_, weak)| weak.strong_count() > 0);
    registry.push((number, Arc::downgrade(state)));
    number
}

/// Called on each of the strand's threads as it starts, with the strands it serves.
pub(crate) fn install(strands: Strands) {
    crate::strand::mark_coroutine_thread();
    LOCAL.with(|local| {
        // A thread starts once; a second set would be ignored.
        let _ = local.set(strands);
    });
}

/// One coroutine in flight: counts it out as finished when dropped, and releases its slot
/// while it waits for tasks.
///
/// One word, so that it adds as little as possible to every coroutine: the strand's number,
/// and in the top bits whether the future has returned and whether its slot is released.
pub(crate) struct InFlight(u64);

/// The bit of `InFlight` that says the future returned; strand numbers never reach it.
const COMPLETED: u64 = 1 << 63;
/// The bit of `InFlight` that says the coroutine's slot is released (it waits for a task).
const RELEASED: u64 = 1 << 62;

impl InFlight {
    pub(crate) fn new(strand: u64) -> Self {
        InFlight(strand)
    }

    /// The future returned: a finish, not a cancellation.
    pub(crate) fn complete(&mut self) {
        self.0 |= COMPLETED;
    }

    /// The strand's number: its key (see `StrandState::key`).
    fn strand(&self) -> u64 {
        self.0 & !(COMPLETED | RELEASED)
    }

    fn completed(&self) -> bool {
        self.0 & COMPLETED != 0
    }

    /// Marks this thread as running a task of the strand for the length of a poll (see
    /// `strand::release_slot_while_waiting`); only on the strand's own threads.
    pub(crate) fn hold_slot(&self) -> Option<HeldSlot> {
        self.with_local(|state| state.hold_slot())
    }

    /// Releases the coroutine's slot while it waits for tasks (`waiting`), and takes it back
    /// once it does not: a coroutine suspended on a task's handle does not count against
    /// the bound, for the reason a thread blocked in a join does not.
    pub(crate) fn release_while(&mut self, waiting: bool) {
        let released = self.0 & RELEASED != 0;
        if waiting == released {
            return;
        }
        let changed = self.with_local(|state| {
            if waiting {
                state.admission.release_while_waiting();
            } else {
                state.admission.take_back();
            }
        });
        if changed.is_some() {
            self.0 ^= RELEASED;
        }
    }

    /// Runs `f` with the strand's state, if this is one of its threads.
    fn with_local<R>(&self, f: impl FnOnce(&StrandState) -> R) -> Option<R> {
        LOCAL.with(|local| {
            let strands = local.get()?;
            let (_, state) = strands
                .iter()
                .find(|(number, _)| *number == self.strand())?;
            Some(f(state))
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // A panic unwinding through the future is a finish, not a cancellation.
        let cancelled = !self.completed() && !std::thread::panicking();
        let released = self.0 & RELEASED != 0;
        let booked = self.with_local(|state| {
            if released {
                state.admission.take_back();
            }
            state.finish(cancelled);
        });
        if booked.is_none() {
            let state = REGISTRY
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|(number, _)| *number == self.strand())
                .and_then(|(_, weak)| weak.upgrade());
            // No state: the runtime is gone, and with it the count.
            if let Some(state) = state {
                if released {
                    state.admission.take_back();
                }
                state.finish(cancelled);
            }
        }
    }
}
