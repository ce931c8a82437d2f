//! The bound on a strand's unfinished tasks, and waiting for them to drain.
//!
//! Counting must not put a contended cache line on every task's path: spawners count what
//! they admit in one counter, finishing threads count what finishes in per-thread stripes,
//! and the two are compared only when the cheap estimate says the strand may be full.

use std::cell::Cell;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::loom::seq_cst_accesses_order_this;
use crate::loom::sync::{AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

/// Finishing threads spread their counts over this many stripes.
#[cfg(not(plait_loom))]
const STRIPES: usize = 16;
/// Fewer under loom: every stripe is a location its model explores.
#[cfg(plait_loom)]
const STRIPES: usize = 2;

/// What a thread that waits for room does instead of parking, and how long it parks.
pub(crate) trait Waiting {
    /// Does one thing in place of waiting; `true` if it did, so the caller looks again.
    fn work(&mut self) -> bool;
    /// How long to park at most before [`work`](Waiting::work) again (`None`: until woken).
    fn park_limit(&self) -> Option<Duration>;
}

pub(crate) struct Admission {
    bound: usize,
    /// Slots released by tasks that hold one and wait for other tasks (see
    /// `strand::release_slot_while_waiting`): the bound grows by as many while they wait.
    /// Striped like `finished`, since every wait releases and takes back; a stripe may wrap below zero
    /// (given back on another thread), and only the wrapping sum counts.
    released: [CachePadded<AtomicUsize>; STRIPES],
    admitted: CachePadded<AtomicUsize>,
    finished: [CachePadded<AtomicUsize>; STRIPES],
    /// A past value of the sum of `finished`: a lower bound, so estimates from it err on the
    /// side of "full" and are then checked.
    finished_seen: CachePadded<AtomicUsize>,
    /// Threads blocked in `admit` or `wait_idle`; finishers notify only when non-zero.
    waiters: CachePadded<AtomicUsize>,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Admission {
    pub(crate) fn new(bound: usize) -> Self {
        Admission {
            bound,
            released: std::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
            admitted: CachePadded::new(AtomicUsize::new(0)),
            finished: std::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
            finished_seen: CachePadded::new(AtomicUsize::new(0)),
            waiters: CachePadded::new(AtomicUsize::new(0)),
            lock: Mutex::new(()),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn bound(&self) -> usize {
        self.bound
    }

    /// Admits one task if the strand holds fewer than `bound` unfinished ones (plus the
    /// slots released now).
    pub(crate) fn try_admit(&self) -> bool {
        let mut admitted = self.admitted.load(Ordering::Relaxed);
        loop {
            if admitted.saturating_sub(self.finished_seen.load(Ordering::Relaxed)) >= self.bound {
                let finished = self.finished_total();
                self.finished_seen.fetch_max(finished, Ordering::Relaxed);
                let bound = self.bound.saturating_add(self.released_total());
                if admitted.saturating_sub(finished) >= bound {
                    return false;
                }
            }
            match self.admitted.compare_exchange_weak(
                admitted,
                admitted + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => admitted = actual,
            }
        }
    }

    /// Admits one task, waiting for room if the strand is full, unless `closed` says the
    /// strand stopped taking tasks (then returns `false`). Between looks it lets `idle` do
    /// what a waiting thread does instead of parking (a pool thread has a spare cover for
    /// it, or helps with queued tasks, which may be what it waits for: see
    /// `task::wait::Idle`).
    pub(crate) fn admit(&self, closed: impl Fn() -> bool, idle: &mut impl Waiting) -> bool {
        loop {
            if closed() {
                return false;
            }
            if self.try_admit() {
                return true;
            }
            if idle.work() {
                continue;
            }
            let guard = self.lock();
            self.waiters.fetch_add(1, Ordering::SeqCst);
            seq_cst_accesses_order_this();
            let outcome = if closed() {
                Some(false)
            } else if self.try_admit() {
                Some(true)
            } else {
                let limit = idle.park_limit().unwrap_or(Duration::MAX);
                drop(
                    self.changed
                        .wait_timeout(guard, limit)
                        .unwrap_or_else(PoisonError::into_inner),
                );
                None
            };
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if let Some(admitted) = outcome {
                return admitted;
            }
        }
    }

    /// Releases one slot while its task waits: the bound grows by one until
    /// [`take_back`](Self::take_back) (see `strand::release_slot_while_waiting`).
    pub(crate) fn release_while_waiting(&self) {
        self.released[stripe()].fetch_add(1, Ordering::SeqCst);
        seq_cst_accesses_order_this();
        // The bound grew: a waiter may fit now.
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.notify();
        }
    }

    /// Takes back a slot released by [`release_while_waiting`](Self::release_while_waiting).
    pub(crate) fn take_back(&self) {
        self.released[stripe()].fetch_sub(1, Ordering::SeqCst);
    }

    /// The slots released now: tasks that wait for other tasks.
    pub(crate) fn released_total(&self) -> usize {
        self.released.iter().fold(0_usize, |sum, stripe| {
            sum.wrapping_add(stripe.load(Ordering::SeqCst))
        })
    }

    /// Wakes every waiter, e.g. because the strand closed.
    pub(crate) fn wake_all(&self) {
        self.notify();
    }

    /// Counts one admitted task as finished.
    pub(crate) fn finish(&self) {
        self.finished[stripe()].fetch_add(1, Ordering::SeqCst);
        // SeqCst on both sides: either a waiter's re-check after registering sees this
        // increment, or this load sees the waiter (the store-load pattern of a Dekker lock).
        seq_cst_accesses_order_this();
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.notify();
        }
    }

    /// Tasks admitted and not yet finished. Never too low: the finished count is read
    /// first, so a task admitted and finished in between adds to the admitted count only.
    pub(crate) fn in_flight(&self) -> usize {
        let finished = self.finished_total();
        self.admitted
            .load(Ordering::SeqCst)
            .saturating_sub(finished)
    }

    /// Waits until no task is in flight or `deadline` passes; returns whether it drained.
    pub(crate) fn wait_idle(&self, deadline: Instant) -> bool {
        let mut guard = self.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        seq_cst_accesses_order_this();
        let drained = loop {
            if self.in_flight() == 0 {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            guard = self
                .changed
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drained
    }

    /// Waits for the next finish (or `limit`); returns the tasks then in flight.
    pub(crate) fn wait_change(&self, limit: Duration) -> usize {
        let guard = self.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        seq_cst_accesses_order_this();
        let before = self.in_flight();
        if before != 0 {
            drop(
                self.changed
                    .wait_timeout(guard, limit)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        self.in_flight()
    }

    /// Whether a thread waits in `admit` or `wait_idle`.
    #[cfg(test)]
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) != 0
    }

    fn finished_total(&self) -> usize {
        self.finished
            .iter()
            .map(|stripe| stripe.load(Ordering::SeqCst))
            .sum()
    }

    fn notify(&self) {
        // Taking the lock orders this notification after a waiter's check-then-wait.
        let _guard = self.lock();
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The lock guards no data, so a poisoned one is as good as any.
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// This thread's stripe: assigned round-robin the first time it finishes a task.
fn stripe() -> usize {
    // Not the shim's: which stripe a thread uses changes no outcome.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|stripe| {
        let mut index = stripe.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
            stripe.set(index);
        }
        index
    })
}

/// Parks until woken: the waiting of a thread that has nothing else to do (the tests'
/// and the models' spawner).
#[cfg(test)]
struct Park;

#[cfg(test)]
impl Waiting for Park {
    fn work(&mut self) -> bool {
        false
    }

    fn park_limit(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn admits_up_to_the_bound_then_refuses() {
        let admission = Admission::new(3);
        assert!((0..3).all(|_| admission.try_admit()));
        assert!(!admission.try_admit());
        assert_eq!(admission.in_flight(), 3);
        admission.finish();
        assert!(admission.try_admit());
        assert!(!admission.try_admit());
    }

    #[test]
    fn a_blocked_admit_wakes_when_a_task_finishes_on_another_thread() {
        let admission = Arc::new(Admission::new(1));
        assert!(admission.try_admit());
        assert!(!admission.try_admit());
        let finisher = {
            let admission = admission.clone();
            std::thread::spawn(move || {
                // Finish only once the main thread is registered as a waiter.
                while admission.waiters.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                admission.finish();
            })
        };
        assert!(admission.admit(|| false, &mut Park));
        finisher.join().unwrap();
        assert_eq!(admission.in_flight(), 1);
    }

    #[test]
    fn a_released_slot_admits_one_more_and_a_waiter_fits_when_a_slot_is_released() {
        let admission = Arc::new(Admission::new(2));
        assert!(admission.try_admit() && admission.try_admit());
        assert!(!admission.try_admit());
        // A waiter for room, and then a task holding a slot that blocks on another task.
        let waiter = {
            let admission = Arc::clone(&admission);
            std::thread::spawn(move || admission.admit(|| false, &mut Park))
        };
        while admission.waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        admission.release_while_waiting();
        assert!(waiter.join().unwrap());
        assert_eq!(admission.in_flight(), 3);
        assert!(!admission.try_admit(), "one released slot admits one task");
        admission.take_back();
        admission.finish();
        assert!(!admission.try_admit(), "two in flight, bound two");
    }

    #[test]
    fn wait_idle_returns_when_drained_and_times_out_otherwise() {
        let admission = Admission::new(10);
        assert!(admission.wait_idle(Instant::now()));
        assert!(admission.try_admit());
        assert!(!admission.wait_idle(Instant::now() + Duration::from_millis(5)));
        admission.finish();
        assert!(admission.wait_idle(Instant::now()));
    }

    #[test]
    fn stress_many_threads_never_exceed_the_bound() {
        let admission = Arc::new(Admission::new(4));
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (admission, live, peak) = (&admission, &live, &peak);
                s.spawn(move || {
                    for _ in 0..2_000 {
                        assert!(admission.admit(|| false, &mut Park));
                        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::hint::spin_loop();
                        live.fetch_sub(1, Ordering::SeqCst);
                        admission.finish();
                    }
                });
            }
        });
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert_eq!(admission.in_flight(), 0);
    }
}

#[cfg(all(test, plait_loom))]
mod loom_test {
    //! Run with `RUSTFLAGS="--cfg plait_loom" cargo test -p plait --lib --release loom_test`.
    //!
    //! The handshake between a spawner that waits for room and whatever makes room (a
    //! finish, a released slot, a close): the waiter registers, looks again, and waits; the
    //! other side changes the count, then notifies if it sees a waiter. Loom runs every
    //! interleaving and fails on a lost wake-up (the waiter parked for good: a deadlock).

    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, Ordering};

    use super::{Admission, Park};
    use crate::loom::model;

    /// A full strand of bound 1, and a spawner waiting in `admit` on its own thread.
    fn full_with_a_waiter(
        closed: &Arc<AtomicBool>,
    ) -> (Arc<Admission>, loom::thread::JoinHandle<bool>) {
        let admission = Arc::new(Admission::new(1));
        assert!(admission.try_admit());
        let waiter = {
            let (admission, closed) = (Arc::clone(&admission), Arc::clone(closed));
            loom::thread::spawn(move || {
                admission.admit(|| closed.load(Ordering::SeqCst), &mut Park)
            })
        };
        (admission, waiter)
    }

    #[test]
    fn a_finish_admits_the_waiting_spawner() {
        model(|| {
            let closed = Arc::new(AtomicBool::new(false));
            let (admission, waiter) = full_with_a_waiter(&closed);
            admission.finish();
            assert!(waiter.join().unwrap(), "admitted, not refused");
            assert_eq!(admission.in_flight(), 1);
        });
    }

    #[test]
    fn a_released_slot_admits_the_waiting_spawner() {
        model(|| {
            let closed = Arc::new(AtomicBool::new(false));
            let (admission, waiter) = full_with_a_waiter(&closed);
            admission.release_while_waiting();
            assert!(waiter.join().unwrap(), "admitted, not refused");
            assert_eq!(
                admission.in_flight(),
                2,
                "one beyond the bound while a slot is out"
            );
            admission.take_back();
        });
    }

    #[test]
    fn a_close_refuses_the_waiting_spawner() {
        model(|| {
            let closed = Arc::new(AtomicBool::new(false));
            let (admission, waiter) = full_with_a_waiter(&closed);
            closed.store(true, Ordering::SeqCst);
            admission.wake_all();
            assert!(!waiter.join().unwrap(), "refused, not admitted");
            assert_eq!(admission.in_flight(), 1);
        });
    }

    #[test]
    fn two_spawners_racing_for_one_slot_get_it_once() {
        model(|| {
            let admission = Arc::new(Admission::new(1));
            let other = {
                let admission = Arc::clone(&admission);
                loom::thread::spawn(move || admission.try_admit())
            };
            let mine = admission.try_admit();
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one admitted: {mine} {theirs}");
            assert_eq!(admission.in_flight(), 1);
        });
    }
}
