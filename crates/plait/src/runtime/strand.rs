//! What the runtime knows about one strand: its admission bound, whether it still takes
//! tasks, and the books it keeps while shutting down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use super::admission::Admission;
use crate::Error;
use crate::error::StrandName;
use crate::task::wait;

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
    pub(crate) admission: Admission,
    flags: CachePadded<Flags>,
    tally: Tally,
}

impl StrandState {
    pub(crate) fn new(name: StrandName, bound: usize) -> Self {
        StrandState {
            name,
            admission: Admission::new(bound),
            flags: CachePadded::new(Flags::default()),
            tally: Tally::default(),
        }
    }

    /// Admits a task, waiting for room if the strand is full (without stalling a
    /// coroutine worker, should it be one that waits).
    pub(crate) fn admit(&self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Shutdown);
        }
        if self.admission.try_admit()
            || wait::blocking_region(|| self.admission.admit(|| self.is_closed()))
        {
            Ok(())
        } else {
            Err(Error::Shutdown)
        }
    }

    /// Admits a task if there is room now.
    pub(crate) fn try_admit(&self) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Shutdown);
        }
        if self.admission.try_admit() {
            Ok(())
        } else {
            Err(Error::QueueFull {
                strand: self.name.as_str(),
                bound: self.admission.bound(),
            })
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
