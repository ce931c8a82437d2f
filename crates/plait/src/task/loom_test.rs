//! Model tests of the completion protocol (`state.rs`, `core.rs`): loom runs every
//! interleaving of the threads below and fails on a lost wake-up (a park that nothing
//! unparks), a data race on the stage or waiter cells, or a broken assertion.
//!
//! Run with: `RUSTFLAGS="--cfg plait_loom" cargo test -p plait --lib --release loom_test`
//! (in its own target folder, e.g. `CARGO_TARGET_DIR=target/loom`, to keep the main build).

use std::sync::Arc as StdArc;
use std::task::{Wake, Waker};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

use super::core::{CancelTask, Core, Task};
use super::state::Reason;
use crate::loom::model;
use crate::{Error, TaskId};

/// Joins as `Handle::join` does: register the thread, park until complete.
fn join<T>(task: &dyn Task<T>) -> crate::Result<T> {
    let header = task.header();
    if header.register(&super::state::thread_waker()) {
        while !header.is_complete() {
            thread::park();
        }
    }
    // SAFETY: complete, and this is the only joiner.
    unsafe { task.take_output() }.expect("taken once")
}

#[test]
fn a_blocked_joiner_is_always_woken_with_the_output() {
    model(|| {
        let core = Arc::new(Core::new(TaskId::next(), || 7));
        let worker = {
            let core = core.clone();
            thread::spawn(move || {
                core.run(&|| false);
            })
        };
        assert_eq!(join(&*core).unwrap(), 7);
        worker.join().unwrap();
    });
}

#[test]
fn cancel_returns_true_exactly_when_the_handle_reports_it() {
    model(|| {
        let runs = Arc::new(AtomicUsize::new(0));
        let core = {
            let runs = runs.clone();
            Arc::new(Core::new(TaskId::next(), move || {
                runs.fetch_add(1, Ordering::SeqCst);
                1
            }))
        };
        let worker = {
            let core = core.clone();
            thread::spawn(move || core.run(&|| false).cancelled)
        };
        let canceller = {
            let core = core.clone();
            thread::spawn(move || core.cancel(Reason::Cancelled))
        };
        let output = join(&*core);
        let took_effect = canceller.join().unwrap();
        let worker_saw_cancel = worker.join().unwrap();
        assert_eq!(took_effect, output.is_err(), "{output:?}");
        assert_eq!(worker_saw_cancel, took_effect);
        assert!(runs.load(Ordering::SeqCst) <= 1, "the body ran twice");
        if output.is_ok() {
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        }
    });
}

#[test]
fn a_cancelled_unstarted_task_never_runs() {
    model(|| {
        let ran = Arc::new(AtomicBool::new(false));
        let core = {
            let ran = ran.clone();
            Arc::new(Core::new(TaskId::next(), move || {
                ran.store(true, Ordering::SeqCst)
            }))
        };
        // The cancel lands first; the worker may come at any point after.
        assert!(core.cancel(Reason::TimedOut));
        let worker = {
            let core = core.clone();
            thread::spawn(move || core.run(&|| false))
        };
        assert!(matches!(join(&*core), Err(Error::TimedOut)));
        assert!(worker.join().unwrap().cancelled);
        assert!(!ran.load(Ordering::SeqCst));
    });
}

#[test]
fn a_panic_is_owned_by_exactly_one_of_worker_and_detacher() {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    model(|| {
        let core = Arc::new(Core::new(TaskId::next(), || -> u8 { panic!("lost?") }));
        let worker = {
            let core = core.clone();
            thread::spawn(move || core.run(&|| false).unobserved_panic.is_some())
        };
        let detacher_owns = if core.header().detach() {
            // SAFETY: detach returned true.
            unsafe { core.take_unobserved_panic() }.is_some()
        } else {
            false
        };
        let worker_owns = worker.join().unwrap();
        assert!(detacher_owns ^ worker_owns, "reported twice or not at all");
    });
    std::panic::set_hook(quiet);
}

struct Flag(std::sync::atomic::AtomicBool);

impl Wake for Flag {
    fn wake(self: StdArc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn the_last_registered_waker_is_woken() {
    model(|| {
        let core = Arc::new(Core::new(TaskId::next(), || ()));
        let worker = {
            let core = core.clone();
            thread::spawn(move || {
                core.run(&|| false);
            })
        };
        let first = StdArc::new(Flag(Default::default()));
        let second = StdArc::new(Flag(Default::default()));
        let header = core.header();
        let mut waiting = header.register(&Waker::from(first.clone()));
        if waiting {
            // A poll with a different waker replaces the first.
            waiting = header.register(&Waker::from(second.clone()));
        }
        worker.join().unwrap();
        assert!(header.is_complete());
        if waiting {
            assert!(second.0.load(std::sync::atomic::Ordering::SeqCst));
        }
    });
}
