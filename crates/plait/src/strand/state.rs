//! A strand's state: its admission bound, whether it still takes tasks, and what it
//! tallies while shutting down. It counts and marks, and knows nothing of how tasks run or
//! wait (waiting for room is `task::wait`'s).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::admission::Admission;
use super::slot::{HeldSlot, mark_holding};
use crate::Error;
use crate::error::StrandName;

/// Read on every task's path and written once or twice in a runtime's life: kept on a
/// cache line of their own so that the counters' traffic does not evict them.
#[derive(Default)]
struct Flags {
    /// No new tasks are admitted.
    closed: AtomicBool,
    /// Tasks that have not started are skipped and running thread tasks are asked to stop.
    cancelling: AtomicBool,
    /// Finishing tasks are counted in the shutdown tally.
    tallying: AtomicBool,
}

/// How the tasks that were in flight when shutdown began ended.
#[derive(Default)]
struct Tally {
    completed: AtomicU64,
    cancelled: AtomicU64,
}

pub(crate) struct StrandState {
    name: StrandName,
    /// This strand among all strands of all runtimes: what a task holding one of its slots
    /// is marked with (see [`hold_slot`](Self::hold_slot)), and its number among the strands
    /// whose tasks run as coroutines.
    key: u64,
    pub(crate) admission: Admission,
    flags: CachePadded<Flags>,
    tally: Tally,
}

impl StrandState {
    /// The strand's name: `thread`, `coroutine` or `process`.
    pub(crate) fn name(&self) -> &'static str {
        self.name.as_str()
    }

    pub(crate) fn new(name: StrandName, bound: usize) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        StrandState {
            name,
            key: NEXT.fetch_add(1, Ordering::Relaxed),
            admission: Admission::new(bound),
            flags: CachePadded::new(Flags::default()),
            tally: Tally::default(),
        }
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Marks the current thread as running a task that holds one of this strand's slots,
    /// until the guard drops (see [`release_slot_while_waiting`](super::release_slot_while_waiting)).
    pub(crate) fn hold_slot(&self) -> HeldSlot {
        mark_holding(std::ptr::from_ref(self))
    }

    /// Admits a task if there is room now.
    pub(crate) fn try_admit(&self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Shutdown);
        }
        if self.admission.try_admit() {
            self.recheck_closed()
        } else {
            Err(Error::QueueFull {
                strand: self.name.as_str(),
                bound: self.admission.bound(),
            })
        }
    }

    /// A shutdown that closed the strand while we were admitting may already have seen it
    /// drained: take the admission back rather than start a task it does not know of.
    pub(crate) fn recheck_closed(&self) -> Result<(), Error> {
        // SeqCst, as the admission's increment before it and shutdown's store-then-count:
        // of the two, at least one sees the other (a Relaxed load could miss the close while
        // shutdown misses the admission).
        if self.flags.closed.load(Ordering::SeqCst) {
            self.admission.finish();
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Books one admitted task as finished; `cancelled` if it reports a cancellation.
    pub(crate) fn finish(&self, cancelled: bool) {
        if self.flags.tallying.load(Ordering::Relaxed) {
            let counter = if cancelled {
                &self.tally.cancelled
            } else {
                &self.tally.completed
            };
            // Before `finish`, so that a drained strand's tally is complete.
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.admission.finish();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.flags.closed.load(Ordering::Relaxed)
    }

    pub(crate) fn is_cancelling(&self) -> bool {
        self.flags.cancelling.load(Ordering::Relaxed)
    }

    /// Stops admitting tasks and starts the tally.
    pub(crate) fn close(&self) {
        self.flags.tallying.store(true, Ordering::SeqCst);
        self.flags.closed.store(true, Ordering::SeqCst);
        // Spawners waiting for room learn that none will come.
        self.admission.wake_all();
    }

    /// Cancels what is left: queued tasks are skipped, running ones asked to stop.
    pub(crate) fn cancel_all(&self) {
        self.flags.cancelling.store(true, Ordering::SeqCst);
    }

    /// `(completed, cancelled)` since [`close`](Self::close).
    pub(crate) fn tally(&self) -> (u64, u64) {
        (
            self.tally.completed.load(Ordering::SeqCst),
            self.tally.cancelled.load(Ordering::SeqCst),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn closing_releases_a_spawner_that_waits_for_room() {
        let state = Arc::new(StrandState::new(StrandName::Thread, 1));
        assert!(state.admit().is_ok());
        let waiter = {
            let state = state.clone();
            std::thread::spawn(move || state.admit())
        };
        // Close only once the spawner is registered as waiting.
        while !state.admission.has_waiters() {
            std::thread::yield_now();
        }
        state.close();
        assert!(matches!(waiter.join().unwrap(), Err(Error::Shutdown)));
        assert_eq!(
            state.admission.in_flight(),
            1,
            "the refused spawn holds no slot"
        );
    }

    #[test]
    fn a_closed_strand_admits_nothing() {
        let state = StrandState::new(StrandName::Thread, 10);
        state.close();
        assert!(matches!(state.try_admit(), Err(Error::Shutdown)));
        assert_eq!(state.admission.in_flight(), 0);
    }
}
