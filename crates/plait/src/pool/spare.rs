//! Spare threads: a pool thread that blocks in a wait has one of them take its place.
//!
//! A waiting pool thread must not run unrelated queued tasks on top of the task that waits
//! (the old way of keeping a fixed pool from starving): a task run there that waits, in
//! turn, for the task below it can never see it resume, as it sits lower on the same stack.
//! So a wait runs only what it waits for, if that is still queued, and otherwise blocks; to
//! keep the pool's parallelism (and its queues drained) while it blocks, the pool wakes or
//! starts a spare thread, as Java's `ForkJoinPool` compensates for a managed block.
//!
//! The books keep one rule, under one lock: while `blocked` threads wait, covered, at
//! least `blocked` spares are active. A spare that finds more spares active than threads
//! blocked retires, with its own deque empty, between tasks or instead of sleeping, and
//! waits idle to be called again; one idle for [`KEEP_ALIVE`] exits. A spare works as a
//! worker does, in a slot with a deque the others steal from; a slot is reused once its
//! spare has exited and its deque is out of sight.
//!
//! At most [`MAX_SPARES`] spares live at once, and after a spare fails to start none is
//! started for [`RETRY_AFTER`]. A wait that finds none to be had falls back to helping with
//! any queued task, which keeps the pool live at the old risk, and asks again each time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Spare threads alive at most, per pool (Java's `ForkJoinPool` allows 256 by default).
pub(crate) const MAX_SPARES: usize = 256;

/// How long a retired spare waits to be called again before it exits.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How long no spare is started after one failed to start (the system is short of threads).
const RETRY_AFTER: Duration = Duration::from_millis(100);

pub(crate) struct Spares {
    /// Pool threads (workers or spares) blocked in a wait, each covered by a spare.
    blocked: AtomicUsize,
    /// Spares working (or looking for work) in place of blocked threads.
    active: AtomicUsize,
    book: Mutex<Book>,
    /// Idle spares wait here to be called or told to exit.
    call: Condvar,
}

#[derive(Default)]
struct Book {
    /// Spare threads alive (slots in use), active or idle.
    alive: usize,
    /// Idle spares.
    idle: usize,
    /// Calls made to idle spares and not yet taken.
    calls: usize,
    /// Slots given back by spares that exited.
    free: Vec<usize>,
    /// Slots ever handed out.
    slots: usize,
    /// No spare is started before then.
    paused_until: Option<Instant>,
    terminated: bool,
}

/// What [`Spares::cover`] did.
pub(crate) enum Cover {
    /// A spare is running in the caller's place; it must call [`Spares::unblocked`] when it stops
    /// waiting.
    Running,
    /// The caller's place is covered by a spare that the caller must start in `slot`
    /// (or report with [`Spares::not_started`]); then as `Running`.
    Start { slot: usize },
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
    pub(crate) fn cover(&self) -> Cover {
        let mut book = self.lock();
        if book.terminated {
            return Cover::Refused;
        }
        let blocked = self.blocked.fetch_add(1, Ordering::SeqCst) + 1;
        if self.active.load(Ordering::SeqCst) >= blocked {
            return Cover::Running;
        }
        if book.idle > book.calls {
            book.calls += 1;
            self.active.fetch_add(1, Ordering::SeqCst);
            self.call.notify_one();
            return Cover::Running;
        }
        let paused = book
            .paused_until
            .is_some_and(|until| Instant::now() < until);
        if book.alive >= MAX_SPARES || paused {
            self.blocked.fetch_sub(1, Ordering::SeqCst);
            return Cover::Refused;
        }
        let slot = book.free.pop().unwrap_or_else(|| {
            book.slots += 1;
            book.slots - 1
        });
        book.alive += 1;
        self.active.fetch_add(1, Ordering::SeqCst);
        Cover::Start { slot }
    }

    /// The spare that [`cover`](Self::cover) promised in `slot` could not be started: take
    /// the promise back, and the caller's place with it, and start none for a while.
    pub(crate) fn not_started(&self, slot: usize) {
        let mut book = self.lock();
        book.alive -= 1;
        book.free.push(slot);
        book.paused_until = Instant::now().checked_add(RETRY_AFTER);
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.blocked.fetch_sub(1, Ordering::SeqCst);
    }

    /// The covered thread stopped waiting.
    pub(crate) fn unblocked(&self) {
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
    /// if it should exit (and then [`release`](Self::release) its slot): the pool
    /// terminated, or nobody called it for [`KEEP_ALIVE`].
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
                // `cover` counted us active when it made the call.
                book.calls -= 1;
                book.idle -= 1;
                return true;
            }
            if book.terminated {
                book.idle -= 1;
                return false;
            }
            let (guard, waited) = self
                .call
                .wait_timeout(book, KEEP_ALIVE)
                .unwrap_or_else(PoisonError::into_inner);
            book = guard;
            if waited.timed_out() && book.calls == 0 {
                book.idle -= 1;
                return false;
            }
        }
    }

    /// An active spare stops (the pool terminated while it worked, or it unwound); it then
    /// [`release`](Self::release)s its slot.
    pub(crate) fn exit_active(&self) {
        let _book = self.lock();
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// A spare's thread ends: its slot is free again. Its deque must be out of sight first.
    pub(crate) fn release(&self, slot: usize) {
        let mut book = self.lock();
        book.alive -= 1;
        book.free.push(slot);
    }

    /// Tells idle spares to exit, and refuses to cover from now on.
    pub(crate) fn terminate(&self) {
        self.lock().terminated = true;
        self.call.notify_all();
    }

    /// Spares working (or looking for work) in place of blocked threads now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Spare threads alive now.
    #[cfg(all(test, not(plait_loom)))]
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

    fn started(cover: Cover) -> usize {
        match cover {
            Cover::Start { slot } => slot,
            Cover::Running => panic!("running, where a new spare was due"),
            Cover::Refused => panic!("refused, where a new spare was due"),
        }
    }

    /// Retires the one spare, surplus, on a thread of its own, and returns once it is idle.
    fn retire_one(spares: &Arc<Spares>) -> std::thread::JoinHandle<bool> {
        started(spares.cover());
        spares.unblocked();
        let spare = {
            let spares = Arc::clone(spares);
            std::thread::spawn(move || spares.retire())
        };
        while spares.lock().idle != 1 {
            std::thread::yield_now();
        }
        spare
    }

    #[test]
    fn each_blocked_thread_gets_a_spare_up_to_the_cap_then_is_refused() {
        let spares = Spares::new();
        for expected in 0..MAX_SPARES {
            assert_eq!(started(spares.cover()), expected);
        }
        assert!(matches!(spares.cover(), Cover::Refused));
        assert_eq!(spares.alive(), MAX_SPARES);
        assert_eq!(
            spares.blocked.load(Ordering::SeqCst),
            MAX_SPARES,
            "a refused cover is not counted blocked"
        );
    }

    #[test]
    fn a_spare_still_active_covers_the_next_blocked_thread() {
        let spares = Spares::new();
        started(spares.cover());
        spares.unblocked();
        assert!(spares.surplus(), "one spare active, nobody blocked");
        assert!(matches!(spares.cover(), Cover::Running));
        assert!(!spares.surplus());
        assert_eq!(spares.alive(), 1);
    }

    #[test]
    fn a_retired_spare_is_called_back_before_a_new_one_starts() {
        let spares = Arc::new(Spares::new());
        let spare = retire_one(&spares);
        assert!(matches!(spares.cover(), Cover::Running));
        assert!(spare.join().unwrap(), "the idle spare goes back to work");
        assert_eq!(spares.alive(), 1);
        assert!(!spares.surplus());
    }

    #[test]
    fn a_spare_that_is_not_surplus_does_not_retire() {
        let spares = Spares::new();
        started(spares.cover());
        assert!(spares.retire(), "its blocked thread still needs it");
        assert_eq!(spares.lock().idle, 0);
    }

    #[test]
    fn a_slot_is_reused_once_its_spare_has_exited() {
        let spares = Spares::new();
        assert_eq!(started(spares.cover()), 0);
        assert_eq!(started(spares.cover()), 1);
        // The spare in slot 0 stops (say it unwound) and its thread ends.
        spares.exit_active();
        spares.release(0);
        assert_eq!(spares.alive(), 1);
        assert_eq!(started(spares.cover()), 0, "the free slot is taken first");
        assert_eq!(started(spares.cover()), 2);
    }

    #[test]
    fn a_failed_start_frees_its_slot_and_pauses_new_starts() {
        let spares = Spares::new();
        assert_eq!(started(spares.cover()), 0);
        spares.not_started(0);
        assert_eq!(spares.alive(), 0);
        assert_eq!(spares.blocked.load(Ordering::SeqCst), 0);
        assert!(
            matches!(spares.cover(), Cover::Refused),
            "no spare is started right after one failed"
        );
        assert_eq!(spares.blocked.load(Ordering::SeqCst), 0);
        spares.lock().paused_until = None;
        assert_eq!(started(spares.cover()), 0, "the slot was given back");
    }

    #[test]
    fn termination_sends_idle_spares_away_and_refuses_new_ones() {
        let spares = Arc::new(Spares::new());
        let spare = retire_one(&spares);
        spares.terminate();
        assert!(!spare.join().unwrap(), "the idle spare exits");
        spares.release(0);
        assert_eq!(spares.alive(), 0);
        assert!(matches!(spares.cover(), Cover::Refused));
    }
}
