//! When pool threads sleep, and who wakes them.
//!
//! A wake-up costs tens of microseconds on a busy VM (far more than a task), so the rule is:
//! never wake a thread per task. A worker with nothing to do first *searches* (spins,
//! looking for work); only then does it sleep. New work wakes a sleeper only if nobody is
//! searching, and a searcher that finds work wakes one more sleeper only if it was the last
//! searcher, so a burst of work wakes threads one at a time, each as the previous one gets
//! busy (tokio's scheduler does the same).
//!
//! No wake-up is lost. Both counts live in one atomic word. The notifier publishes work, then
//! reads the word after a `SeqCst` fence; a worker changes the word (going from searching to
//! sleeping), then looks at the queues after a `SeqCst` fence. Of the two fences, whichever
//! comes second in their total order sees the other side's write: either the notifier sees
//! the searcher (who will find the work) or the sleeper (whom it wakes), or the worker sees
//! the work. The notifier's side is a fence and a load, so a spawn reads the shared line
//! rather than writing it. The model tests at the bottom check this with loom (removing the
//! notifier's fence makes them fail).

use crate::loom::sync::{AtomicBool, AtomicUsize, Mutex, Ordering, fence};
use crate::loom::thread::{self, Thread};

/// The low bits of `state` count searching workers; the bits from here up, sleeping ones.
const SLEEPING: usize = 1 << 16;

fn searching(state: usize) -> usize {
    state % SLEEPING
}

fn sleeping(state: usize) -> usize {
    state / SLEEPING
}

pub(crate) struct Sleep {
    /// Workers awake and looking for work (including ones woken and not yet running), and
    /// workers asleep (on `sleepers`); see [`SLEEPING`].
    state: AtomicUsize,
    /// Sleeping workers: their index and their thread, to unpark. A worker learns that it
    /// was woken (rather than unparked spuriously) by finding itself off the list, under the
    /// lock, which also orders the waker's work before the worker's.
    sleepers: Mutex<Vec<(usize, Thread)>>,
    terminated: AtomicBool,
}

impl Sleep {
    pub(crate) fn new(workers: usize) -> Self {
        assert!(
            workers < SLEEPING,
            "a pool of {workers} threads is beyond this design"
        );
        Sleep {
            state: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::with_capacity(workers)),
            terminated: AtomicBool::new(false),
        }
    }

    /// Called after work was made available (pushed to a queue).
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        let state = self.state.load(Ordering::Relaxed);
        if searching(state) == 0 && sleeping(state) != 0 {
            self.wake_one();
        }
    }

    /// Like [`notify`](Self::notify) for work whose pusher takes it back itself if nobody
    /// else does (a `join`'s second closure): without the fence, a sleeper that is just
    /// going to sleep may be missed, which costs that work its parallelism but never its
    /// run. Saves a full fence on every join.
    pub(crate) fn notify_optional(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if searching(state) == 0 && sleeping(state) != 0 {
            self.wake_one();
        }
    }

    /// A worker found no work and starts searching.
    pub(crate) fn start_searching(&self) {
        self.state.fetch_add(1, Ordering::SeqCst);
    }

    /// A searching worker found work (or a spare leaves). If it was the last searcher there
    /// may be more work than workers awake, so it wakes a sleeper to search in its place.
    pub(crate) fn stop_searching(&self) {
        let state = self.state.fetch_sub(1, Ordering::SeqCst);
        if searching(state) == 1 && sleeping(state) != 0 {
            self.wake_one();
        }
    }

    /// A searching worker found nothing: it sleeps until woken. `has_work` looks at every
    /// queue. Returns `true` with the worker searching again, or `false` once the pool
    /// terminates.
    pub(crate) fn sleep(&self, index: usize, has_work: impl Fn() -> bool) -> bool {
        let state = self.state.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if searching(state) == 1 && has_work() {
            // A notifier may have seen us searching and left this work to us.
            self.state.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        {
            let mut sleepers = self.lock();
            if self.terminated.load(Ordering::SeqCst) {
                return false;
            }
            sleepers.push((index, thread::current()));
            self.state.fetch_add(SLEEPING, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        if has_work() {
            if self.unregister(index) {
                self.state.fetch_add(1, Ordering::SeqCst);
                return true;
            }
            // A waker took us off the list: we are woken already (and counted searching).
            return !self.terminated.load(Ordering::SeqCst);
        }
        // Park until a waker takes us off the list. Looking at the list before each park
        // (rather than trusting an unpark token to survive) leaves no window.
        while self.is_listed(index) {
            thread::park();
        }
        !self.terminated.load(Ordering::SeqCst)
    }

    /// Wakes every sleeper for good.
    pub(crate) fn terminate(&self) {
        let sleepers = {
            let mut sleepers = self.lock();
            self.terminated.store(true, Ordering::SeqCst);
            std::mem::take(&mut *sleepers)
        };
        self.state
            .fetch_sub(sleepers.len() * SLEEPING, Ordering::SeqCst);
        for (_, thread) in sleepers {
            thread.unpark();
        }
    }

    fn wake_one(&self) {
        let taken = {
            let mut sleepers = self.lock();
            let taken = sleepers.pop();
            if taken.is_some() {
                // One fewer sleeping, one more searching, at once: counted as searching from
                // now, so that more work does not wake more threads before this one runs.
                self.state.fetch_sub(SLEEPING - 1, Ordering::SeqCst);
            }
            taken
        };
        if let Some((_, thread)) = taken {
            thread.unpark();
        }
    }

    fn is_listed(&self, index: usize) -> bool {
        self.lock().iter().any(|(i, _)| *i == index)
    }

    /// Takes worker `index` off the sleepers; `false` if a waker already did.
    fn unregister(&self, index: usize) -> bool {
        let mut sleepers = self.lock();
        match sleepers.iter().position(|(i, _)| *i == index) {
            Some(at) => {
                sleepers.swap_remove(at);
                self.state.fetch_sub(SLEEPING, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> impl std::ops::DerefMut<Target = Vec<(usize, Thread)>> + '_ {
        // Every critical section leaves the list consistent, so a poisoned lock is usable.
        self.sleepers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(all(test, plait_loom))]
mod loom_test {
    //! Run with `RUSTFLAGS="--cfg plait_loom" cargo test -p plait --lib --release loom_test`.

    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicUsize, Ordering};

    use super::Sleep;
    use crate::loom::model;

    /// A worker of the model: takes jobs from `queue` until it has seen `total` taken, with
    /// the pool's search-then-sleep cycle in between.
    fn worker(index: usize, sleep: &Sleep, queue: &AtomicUsize, taken: &AtomicUsize, total: usize) {
        let take = || {
            queue
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        let mut searching = false;
        loop {
            if take() {
                if searching {
                    sleep.stop_searching();
                    searching = false;
                }
                if taken.fetch_add(1, Ordering::SeqCst) + 1 == total {
                    sleep.terminate();
                }
                continue;
            }
            if !searching {
                sleep.start_searching();
                searching = true;
                continue;
            }
            if !sleep.sleep(index, || queue.load(Ordering::SeqCst) != 0) {
                return;
            }
        }
    }

    #[test]
    fn a_job_pushed_while_the_worker_goes_to_sleep_is_never_stranded() {
        model(|| {
            let sleep = Arc::new(Sleep::new(1));
            let queue = Arc::new(AtomicUsize::new(0));
            let taken = Arc::new(AtomicUsize::new(0));
            let w = {
                let (sleep, queue, taken) = (sleep.clone(), queue.clone(), taken.clone());
                loom::thread::spawn(move || worker(0, &sleep, &queue, &taken, 1))
            };
            queue.fetch_add(1, Ordering::SeqCst);
            sleep.notify();
            // A lost wake-up leaves the worker parked with the job queued: loom reports the
            // deadlock.
            w.join().unwrap();
            assert_eq!(taken.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_spare_that_leaves_its_search_hands_a_new_job_on() {
        // A surplus spare leaves while searching: a notifier that saw it searching woke
        // nobody, so its leaving must wake the sleeping worker (or find it searching).
        model(|| {
            let sleep = Arc::new(Sleep::new(2));
            let queue = Arc::new(AtomicUsize::new(0));
            let taken = Arc::new(AtomicUsize::new(0));
            let w = {
                let (sleep, queue, taken) = (sleep.clone(), queue.clone(), taken.clone());
                loom::thread::spawn(move || worker(0, &sleep, &queue, &taken, 1))
            };
            let spare = {
                let sleep = sleep.clone();
                loom::thread::spawn(move || {
                    sleep.start_searching();
                    sleep.stop_searching();
                })
            };
            queue.fetch_add(1, Ordering::SeqCst);
            sleep.notify();
            spare.join().unwrap();
            w.join().unwrap();
            assert_eq!(taken.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn two_jobs_reach_two_sleeping_workers() {
        model(|| {
            let sleep = Arc::new(Sleep::new(2));
            let queue = Arc::new(AtomicUsize::new(0));
            let taken = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..2)
                .map(|i| {
                    let (sleep, queue, taken) = (sleep.clone(), queue.clone(), taken.clone());
                    loom::thread::spawn(move || worker(i, &sleep, &queue, &taken, 2))
                })
                .collect();
            for _ in 0..2 {
                queue.fetch_add(1, Ordering::SeqCst);
                sleep.notify();
            }
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(taken.load(Ordering::SeqCst), 2);
        });
    }
}
