//! Cancelling queued and running tasks on both strands.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use plait::{Runtime, sync::Event};

#[test]
fn a_cancelled_queued_task_never_starts_and_reports_at_once() {
    let rt = common::runtime(1);
    let (release, blocker) = common::block_a_thread(&rt);
    let ran = Arc::new(AtomicBool::new(false));
    let queued = {
        let ran = ran.clone();
        rt.spawn(move || ran.store(true, Ordering::SeqCst))
    };
    assert!(queued.cancel());
    // Reported while the pool is still blocked: join does not wait for the task's turn.
    assert!(queued.join().unwrap_err().is_cancelled());
    release.send(()).unwrap();
    blocker.join().unwrap();
    let report = rt.shutdown(std::time::Duration::from_secs(5));
    // The cancelled task may still sit in the queue when the shutdown starts (the pool
    // skips it when it gets there): then the report counts it as cancelled, which it is.
    assert_eq!(report.threads.unfinished, 0, "{report}");
    assert!(report.threads.cancelled <= 1, "{report}");
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn a_running_thread_task_sees_the_cancel_token() {
    let rt = common::runtime(1);
    let started = Arc::new(Event::new());
    let noticed = Arc::new(AtomicBool::new(false));
    let task = {
        let (started, noticed) = (started.clone(), noticed.clone());
        rt.spawn(move || {
            started.set();
            while !plait::task::is_cancelled() {
                std::hint::spin_loop();
            }
            noticed.store(true, Ordering::SeqCst);
            "partial result, discarded"
        })
    };
    started.wait();
    assert!(task.cancel());
    assert!(task.join().unwrap_err().is_cancelled());
    assert!(noticed.load(Ordering::SeqCst));
}

#[test]
fn check_cancelled_lets_fallible_tasks_bail_with_question_mark() {
    let rt = common::runtime(1);
    let started = Arc::new(Event::new());
    let task = {
        let started = started.clone();
        rt.spawn(move || -> plait::Result<u64> {
            started.set();
            let mut n = 0u64;
            loop {
                plait::task::check_cancelled()?;
                n = std::hint::black_box(n + 1);
            }
        })
    };
    started.wait();
    assert!(task.cancel());
    assert!(task.join().unwrap_err().is_cancelled());
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_running_coroutine_is_dropped_at_its_next_await() {
    let rt = common::runtime(1);
    let started = Arc::new(Event::new());
    let dropped = Arc::new(AtomicBool::new(false));
    let task = {
        let (started, dropped) = (started.clone(), dropped.clone());
        rt.spawn_async(async move {
            let _guard = SetOnDrop(dropped);
            started.set();
            std::future::pending::<()>().await;
        })
    };
    started.wait();
    assert!(task.cancel());
    assert!(task.join().unwrap_err().is_cancelled());
    assert!(
        dropped.load(Ordering::SeqCst),
        "the coroutine's state was dropped"
    );
}

#[test]
fn cancelling_a_finished_task_is_too_late_and_the_result_stands() {
    let rt = common::runtime(1);
    for handle in [rt.spawn(|| 5), rt.spawn_async(async { 5 })] {
        while !handle.is_finished() {
            std::thread::yield_now();
        }
        assert!(!handle.cancel());
        assert_eq!(handle.join().unwrap(), 5);
    }
}

#[test]
fn a_cancel_handle_stops_a_task_that_another_thread_is_joining() {
    let rt = common::runtime(1);
    let started = Arc::new(Event::new());
    let task = {
        let started = started.clone();
        rt.spawn_async(async move {
            started.set();
            std::future::pending::<u8>().await
        })
    };
    let canceller = task.cancel_handle();
    let joiner = std::thread::spawn(move || task.join());
    started.wait();
    assert!(canceller.cancel());
    assert!(joiner.join().unwrap().unwrap_err().is_cancelled());
}

#[test]
fn cancel_races_completion_without_losing_or_doubling_a_result() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    for _ in 0..2_000 {
        let handle = rt.spawn(|| 9);
        let cancelled = handle.cancel();
        match handle.join() {
            Ok(v) => {
                assert!(
                    !cancelled,
                    "cancel said it took effect, yet a value came back"
                );
                assert_eq!(v, 9);
            }
            Err(e) => {
                assert!(cancelled && e.is_cancelled(), "{e}");
            }
        }
    }
}
