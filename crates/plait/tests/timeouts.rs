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
    assert_eq!(rt.metrics().in_flight(), 0);
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

#[test]
fn a_thread_task_that_ends_past_its_limit_never_reports_its_value_100_000_times() {
    let _busy = common::BusyLoops::start(2);
    // Sleepers rather than spinners, on many threads: 100,000 limits of 0-1 ms in about a
    // second. One coroutine worker, busy with nothing: the limit must not need it.
    let rt = Runtime::builder()
        .threads(64)
        .coroutine_workers(1)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..100_000u64)
        .map(|i| {
            let limit = Duration::from_micros(i % 1001);
            rt.task().timeout(limit).spawn(move || {
                // Does not check: it ends past its limit however the clock is read.
                std::thread::sleep(limit + Duration::from_micros(20));
                i
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let result = handle.join();
        assert!(
            matches!(result, Err(Error::TimedOut)),
            "task {i}: {result:?}"
        );
    }
}

#[test]
fn a_cooperative_thread_task_stops_at_its_limit_while_the_coroutine_strand_is_stuck() {
    let _busy = common::BusyLoops::start(2);
    let rt = Runtime::builder()
        .threads(2)
        .coroutine_workers(1)
        .build()
        .unwrap();
    // The one coroutine worker is blocked: no tokio timer can fire.
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let stuck = rt.spawn_async(async move {
        let _ = gate.recv();
    });
    for micros in [0, 10, 100, 1000] {
        let limit = Duration::from_micros(micros);
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&stopped);
        let started = Instant::now();
        let result = rt
            .task()
            .timeout(limit)
            .spawn(move || {
                // Gives up after 30 s without a word, so that only `stopped` tells.
                while started.elapsed() < Duration::from_secs(30) {
                    if plait::task::is_cancelled() {
                        seen.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::hint::spin_loop();
                }
            })
            .join();
        assert!(
            matches!(result, Err(Error::TimedOut)),
            "{micros} µs: {result:?}"
        );
        assert!(
            stopped.load(Ordering::SeqCst),
            "{micros} µs: is_cancelled never turned true; the task gave up after {:?}",
            started.elapsed()
        );
    }
    release.send(()).unwrap();
    stuck.join().unwrap();
}
