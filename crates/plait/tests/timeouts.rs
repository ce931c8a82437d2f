//! Time limits, on both strands and on waiting.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plait::{Error, Runtime};

#[test]
fn a_coroutine_past_its_limit_is_dropped_and_reports_timed_out() {
    let rt = common::runtime(2);
    let started = Instant::now();
    let stuck = rt
        .task()
        .timeout(Duration::from_millis(30))
        .spawn_async(std::future::pending::<()>());
    assert!(stuck.join().unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_coroutine_within_its_limit_returns_its_value() {
    let rt = common::runtime(2);
    let quick = rt
        .task()
        .timeout(Duration::from_secs(30))
        .spawn_async(async { 3 });
    assert_eq!(quick.join().unwrap(), 3);
}

#[test]
fn a_thread_task_past_its_limit_is_asked_to_stop_and_reports_timed_out() {
    let rt = common::runtime(2);
    let noticed = Arc::new(AtomicBool::new(false));
    let task = {
        let noticed = noticed.clone();
        rt.task().timeout(Duration::from_millis(30)).spawn(move || {
            while !plait::task::is_cancelled() {
                std::hint::spin_loop();
            }
            noticed.store(true, Ordering::SeqCst);
        })
    };
    assert!(task.join().unwrap_err().is_timeout());
    assert!(noticed.load(Ordering::SeqCst));
}

#[test]
fn the_limit_counts_from_when_the_task_starts_not_when_it_queues() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let blocker = rt.spawn(move || gate.recv().unwrap());
    let queued = rt.task().timeout(Duration::from_millis(200)).spawn(|| 1);
    std::thread::sleep(Duration::from_millis(300)); // longer than the limit, while queued
    release.send(()).unwrap();
    blocker.join().unwrap();
    assert_eq!(queued.join().unwrap(), 1);
}

#[test]
fn a_tasks_own_limit_within_a_join_timeout_is_timed_out_not_a_wait_timeout() {
    let rt = common::runtime(2);
    let limited = rt
        .task()
        .timeout(Duration::from_millis(10))
        .spawn_async(std::future::pending::<()>());
    let err = limited.join_timeout(Duration::from_secs(60)).unwrap_err();
    assert!(matches!(err, Error::TimedOut), "{err}");
}

#[test]
fn join_timeout_gives_up_and_cancels_the_task() {
    let rt = common::runtime(2);
    let stuck = rt.spawn_async(std::future::pending::<()>());
    let started = Instant::now();
    let err = stuck.join_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(
        matches!(err, Error::WaitTimedOut { waited } if waited == Duration::from_millis(20)),
        "{err}"
    );
    assert!(
        !err.is_timeout(),
        "a wait's deadline is not the task's limit"
    );
    assert!(started.elapsed() >= Duration::from_millis(20));
    // The cancelled coroutine is dropped, not left running (it may still be on its way out
    // when the shutdown starts, and be counted there as cancelled).
    let report = rt.shutdown(Duration::from_secs(5));
    assert_eq!(
        report.coroutines.completed + report.coroutines.unfinished,
        0,
        "{report}"
    );
    assert_eq!(rt.in_flight(), (0, 0, 0));
}

#[test]
fn join_timeout_returns_a_value_that_arrives_in_time() {
    let rt = common::runtime(2);
    let quick = rt.spawn(|| 8);
    assert_eq!(quick.join_timeout(Duration::from_secs(30)).unwrap(), 8);
}

#[test]
fn the_timeout_function_limits_any_future() {
    let rt = common::runtime(2);
    let outcome = rt.block_on(plait::timeout(Duration::from_millis(10), async {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }));
    assert!(outcome.unwrap_err().is_timeout());
    let fine = rt.block_on(plait::timeout(Duration::from_secs(30), async { 4 }));
    assert_eq!(fine.unwrap(), 4);
}
