//! Spare threads: a pool thread that blocks in a wait lends its place to one of them.
//!
//! A waiting pool thread must not run unrelated queued tasks on top of the task that waits
//! (the old way of keeping a fixed pool from starving): a task run there that waits, in
//! turn, for the task below it can never see it resume, as it sits lower on the same stack.
//! So a wait runs only what it waits for, if that is still queued, and otherwise blocks; to
//! keep the pool's parallelism (and its queues drained) while it blocks, the pool wakes or
//! starts a spare thread, as Java's `ForkJoinPool` compensates for a managed block.
//!
//! The books keep one rule, under one lock: while `blocked` threads lend their place, at
//! least `blocked` spares are active. A spare that finds more spares active than threads
//! blocked retires, with its own deque empty, between tasks or instead of sleeping, and
//! waits idle to be called again. A spare works as a worker does, with a deque the others
//! steal from; so that deque outlives no thread, spares stay (idle) until the pool ends.
//!
//! A pool starts at most [`MAX_SPARES`] spare threads, as many as were ever blocked at once.
//! A wait that finds none to be had falls back to helping with any queued task, which keeps
//! the pool live at the old risk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Spare threads at most, per pool (Java's `ForkJoinPool` allows 256 by default).
pub(crate) const MAX_SPARES: usize = 256;

pub(crate) struct Spares {
    /// Pool threads (workers or spares) blocked in a wait that lent their place.
    blocked: AtomicUsize,
    /// Spares working (or looking for work) in place of blocked threads.
    active: AtomicUsize,
    book: Mutex<Book>,
    /// Idle spares wait here to be called or told to exit.
    call: Condvar,
}

#[derive(Default)]
struct Book {
    /// Spare threads alive, active or idle.
    alive: usize,
    /// Idle spares.
    idle: usize,
    /// Calls made to idle spares and not yet taken.
    calls: usize,
    /// Spare serial numbers handed out so far, for names and sleep slots.
    started: usize,
    terminated: bool,
}

/// What [`Spares::lend`] did.
pub(crate) enum Lend {
    /// The caller's place is covered; it must call [`Spares::give_back`] when it stops
    /// waiting.
    Covered,
    /// The caller's place is covered by a spare that the caller must start, numbered
    /// `serial`; then as `Covered`.
    Start { serial: usize },
    /// No spare can be had: the caller should help with queued tasks while it waits.
    Refused,
}

impl Spares {
    pub(crate) fn new() -> Self {
        Spares {
            blocked: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            book: Mutex::new(Book::default()),
            call: Condvar::new(),
        }
    }

    /// A pool thread is about to block: count it, and make sure a spare covers it.
    pub(crate) fn lend(&self) -> Lend {
        let mut book = self.lock();
        if book.terminated {
            return Lend::Refused;
        }
        let blocked = self.blocked.fetch_add(1, Ordering::SeqCst) + 1;
        if self.active.load(Ordering::SeqCst) >= blocked {
            return Lend::Covered;
        }
        if book.idle > book.calls {
            book.calls += 1;
            self.active.fetch_add(1, Ordering::SeqCst);
            self.call.notify_one();
            return Lend::Covered;
        }
        // Serial numbers name deque slots, so they are capped, not the threads alive: a
        // number given to a spare that failed to start is not handed out again.
        if book.started >= MAX_SPARES {
            self.blocked.fetch_sub(1, Ordering::SeqCst);
            return Lend::Refused;
        }
        book.alive += 1;
        book.started += 1;
        self.active.fetch_add(1, Ordering::SeqCst);
        Lend::Start {
            serial: book.started,
        }
    }

    /// A spare that was promised by [`lend`](Self::lend) could not be started: take the
    /// promise back, and the caller's place with it.
    pub(crate) fn not_started(&self) {
        let mut book = self.lock();
        book.alive -= 1;
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.blocked.fetch_sub(1, Ordering::SeqCst);
    }

    /// The thread that lent its place stopped waiting.
    pub(crate) fn give_back(&self) {
        // Only ever lowers `blocked`, which can only make a spare retire sooner: no lock.
        self.blocked.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether an active spare should retire: more spares work than threads are blocked.
    /// Cheap enough to ask between tasks.
    pub(crate) fn surplus(&self) -> bool {
        self.active.load(Ordering::Relaxed) > self.blocked.load(Ordering::Relaxed)
    }

    /// An active spare retires if it is still surplus, and waits idle until called again.
    /// Returns `true` if it was called back to work (or was not surplus after all), `false`
    /// if it should exit: the pool terminated.
    pub(crate) fn retire(&self) -> bool {
        let mut book = self.lock();
        if !book.terminated
            && self.active.load(Ordering::SeqCst) <= self.blocked.load(Ordering::SeqCst)
        {
            return true;
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        book.idle += 1;
        loop {
            if book.calls > 0 {
                // `lend` counted us active when it made the call.
                book.calls -= 1;
                book.idle -= 1;
                return true;
            }
            if book.terminated {
                book.idle -= 1;
                book.alive -= 1;
                return false;
            }
            book = self.call.wait(book).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// An active spare exits (the pool terminated while it worked).
    pub(crate) fn exit_active(&self) {
        let mut book = self.lock();
        book.alive -= 1;
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Tells idle spares to exit, and refuses to lend from now on.
    pub(crate) fn terminate(&self) {
        self.lock().terminated = true;
        self.call.notify_all();
    }

    /// Spare threads alive now.
    #[cfg(test)]
    pub(crate) fn alive(&self) -> usize {
        self.lock().alive
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // Every critical section leaves the books consistent, so a poisoned lock is usable.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(all(test, not(plait_loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn started(lend: Lend) -> usize {
        match lend {
            Lend::Start { serial } => serial,
            Lend::Covered => panic!("covered, where a new spare was due"),
            Lend::Refused => panic!("refused, where a new spare was due"),
        }
    }

    /// Waits until a spare has gone idle in `retire` on another thread.
    fn until_idle(spares: &Spares, idle: usize) {
        while spares.lock().idle != idle {
            std::thread::yield_now();
        }
    }

    #[test]
    fn each_blocked_thread_gets_a_spare_up_to_the_cap_then_is_refused() {
        let spares = Spares::new();
        for expected in 1..=MAX_SPARES {
            assert_eq!(started(spares.lend()), expected);
        }
        assert!(matches!(spares.lend(), Lend::Refused));
        assert_eq!(spares.alive(), MAX_SPARES);
        assert_eq!(
            spares.blocked.load(Ordering::SeqCst),
            MAX_SPARES,
            "a refused lend is not counted blocked"
        );
    }

    #[test]
    fn a_spare_still_active_covers_the_next_blocked_thread() {
        let spares = Spares::new();
        started(spares.lend());
        spares.give_back();
        assert!(spares.surplus(), "one spare active, nobody blocked");
        assert!(matches!(spares.lend(), Lend::Covered));
        assert!(!spares.surplus());
        assert_eq!(spares.alive(), 1);
    }

    #[test]
    fn a_retired_spare_is_called_back_before_a_new_one_starts() {
        let spares = Arc::new(Spares::new());
        started(spares.lend());
        spares.give_back();
        let spare = {
            let spares = Arc::clone(&spares);
            std::thread::spawn(move || spares.retire())
        };
        until_idle(&spares, 1);
        assert!(matches!(spares.lend(), Lend::Covered));
        assert!(spare.join().unwrap(), "the idle spare goes back to work");
        assert_eq!(spares.alive(), 1);
        assert!(!spares.surplus());
    }

    #[test]
    fn a_spare_that_is_not_surplus_does_not_retire() {
        let spares = Spares::new();
        started(spares.lend());
        assert!(spares.retire(), "its blocked thread still needs it");
        assert_eq!(spares.lock().idle, 0);
    }

    #[test]
    fn termination_sends_idle_spares_away_and_refuses_new_ones() {
        let spares = Arc::new(Spares::new());
        started(spares.lend());
        spares.give_back();
        let spare = {
            let spares = Arc::clone(&spares);
            std::thread::spawn(move || spares.retire())
        };
        until_idle(&spares, 1);
        spares.terminate();
        assert!(!spare.join().unwrap(), "the idle spare exits");
        assert_eq!(spares.alive(), 0);
        assert!(matches!(spares.lend(), Lend::Refused));
    }
}
