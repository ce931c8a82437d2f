//! A strand's books: its admission bound, whether it still takes tasks, what it tallies
//! while shutting down, and which strand's slot the task running on each thread holds.
//!
//! The bottom of the runtime's bookkeeping: it counts and marks, and knows nothing of how
//! tasks run or wait (waiting for room is `task::wait`'s, which lends a waiting task's
//! slot through [`lend_held_slot`]).

pub(crate) mod admission;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use self::admission::Admission;
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
    /// is marked with (see [`hold`]), and the coroutine books' number for it.
    key: u64,
    pub(crate) admission: Admission,
    flags: CachePadded<Flags>,
    tally: Tally,
}

impl StrandState {
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
    /// until the guard drops (see [`lend_held_slot`]).
    pub(crate) fn hold(&self) -> Holding {
        Holding(HOLDING.with(|holding| holding.replace((std::ptr::from_ref(self), false))))
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

thread_local! {
    /// The strand whose slot the task running on this thread holds (null: none), set by
    /// [`StrandState::hold`] for the length of the task's run (or of a coroutine's poll),
    /// and whether that slot is lent now.
    static HOLDING: Cell<(*const StrandState, bool)> =
        const { Cell::new((std::ptr::null(), false)) };
}

/// Marks the current thread as running a task that holds no slot (a scope's task, the
/// second closure of a join), until the guard drops.
pub(crate) fn hold_nothing() -> Holding {
    Holding(HOLDING.with(|holding| holding.replace((std::ptr::null(), false))))
}

/// Restores the mark it replaced (tasks run inside tasks: a join that runs one in place).
pub(crate) struct Holding((*const StrandState, bool));

impl Drop for Holding {
    fn drop(&mut self) {
        HOLDING.with(|holding| holding.set(self.0));
    }
}

/// Lends the slot of the task running on this thread, if it holds one, until the returned
/// guard drops: for a task about to block on other tasks (a join, a scope's end, room in a
/// full strand).
///
/// A task that waits for tasks does not count against its strand's bound: tasks that spawn
/// children and join them, as many as the bound, would otherwise hold every slot while
/// their children (or their children's children) wait for room that never comes. So a
/// strand holds, beyond its bound, at most one task per task blocked on tasks at that
/// moment.
///
/// A task lends its slot once however its waits nest (a join whose wait parks after its
/// spin, say); a task run in place inside the wait holds, and lends, a slot of its own.
pub(crate) fn lend_held_slot() -> Option<LentSlot> {
    let (state, lent) = HOLDING.with(Cell::get);
    if lent {
        return None;
    }
    // SAFETY: set by `hold` from a strand that outlives the task running here (its pool
    // thread, or its coroutine thread, keeps the strand's state alive), and cleared when
    // the run ends; the guard is dropped within the same run (see `LentSlot`).
    let strand = unsafe { state.as_ref() }?;
    strand.admission.lend();
    HOLDING.with(|holding| holding.set((state, true)));
    Some(LentSlot(state))
}

thread_local! {
    /// Whether this thread is one of plait's coroutine threads, set as it starts.
    static COROUTINE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one of plait's coroutine threads (for its life).
pub(crate) fn mark_coroutine_thread() {
    COROUTINE_THREAD.with(|marked| marked.set(true));
}

/// Whether the current thread is one of plait's coroutine threads.
pub(crate) fn on_coroutine_thread() -> bool {
    COROUTINE_THREAD.with(Cell::get)
}

thread_local! {
    /// Set by a task handle that a future polls and finds unfinished: the coroutine being
    /// polled waits for a task (see `coroutine::tracked`).
    static AWAITS_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Notes that the future being polled on this thread waits for a task.
pub(crate) fn note_awaiting_task() {
    AWAITS_TASK.with(|awaits| awaits.set(true));
}

/// Whether the future polled on this thread waited for a task since the last call; clears
/// the note.
pub(crate) fn take_awaiting_task() -> bool {
    AWAITS_TASK.with(|awaits| awaits.replace(false))
}

/// A slot lent by a task that waits for tasks: given back when dropped, which must happen
/// before the task's run (or poll) ends, and after the runs of the tasks it ran in place
/// meanwhile (guards drop in the order they were made).
pub(crate) struct LentSlot(*const StrandState);

impl Drop for LentSlot {
    fn drop(&mut self) {
        HOLDING.with(|holding| holding.set((self.0, false)));
        // SAFETY: as in `lend_held_slot`: the strand outlives the run that made the guard,
        // and the guard does not outlive that run.
        unsafe { &*self.0 }.admission.unlend();
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
