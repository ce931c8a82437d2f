//! Shutting down with work in flight: every task ran or reported a cancellation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use plait::{Error, Runtime, sync::Event};

#[test]
fn shutdown_lets_quick_work_finish() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let handles: Vec<_> = (0..100u32).map(|i| rt.spawn(move || i)).collect();
    let waits: Vec<_> = (0..100u32)
        .map(|i| {
            rt.spawn_async(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                i
            })
        })
        .collect();
    let report = rt.shutdown(Duration::from_secs(30));
    assert!(report.is_clean(), "{report}");
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap() as usize, i);
    }
    for (i, h) in waits.into_iter().enumerate() {
        assert_eq!(h.join().unwrap() as usize, i);
    }
}

#[test]
fn every_task_in_flight_either_ran_or_reported_cancelled() {
    let rt = common::runtime(1);
    let ran = Arc::new(AtomicUsize::new(0));
    // One thread task that only stops when asked, so queued ones stay queued.
    let hog = common::spawn_until_cancelled(&rt);
    let queued: Vec<_> = (0..50)
        .map(|_| {
            let ran = ran.clone();
            rt.spawn(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let sleepers: Vec<_> = (0..50)
        .map(|_| rt.spawn_async(std::future::pending::<()>()))
        .collect();

    let report = rt.shutdown(Duration::from_millis(50));

    assert!(hog.join().unwrap_err().is_cancelled());
    let mut cancelled = 0;
    for h in queued {
        match h.join() {
            Ok(()) => {}
            Err(Error::Cancelled) => cancelled += 1,
            Err(other) => panic!("a task was lost as {other}"),
        }
    }
    assert_eq!(
        cancelled + ran.load(Ordering::SeqCst),
        50,
        "each ran or was cancelled"
    );
    for h in sleepers {
        assert!(h.join().unwrap_err().is_cancelled());
    }
    assert_eq!(report.coroutines.cancelled, 50, "{report}");
    assert_eq!(
        report.threads.completed + report.threads.cancelled + report.threads.unfinished,
        51,
        "{report}"
    );
    assert!(!report.is_clean());
}

#[test]
fn a_task_that_ignores_cancellation_is_reported_unfinished() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let started = Arc::new(Event::new());
    let release = Arc::new(Event::new());
    let stubborn = {
        let (started, release) = (started.clone(), release.clone());
        rt.spawn(move || {
            started.set();
            release.wait();
        })
    };
    started.wait();
    let report = rt.shutdown(Duration::from_millis(10));
    assert_eq!(report.threads.unfinished, 1, "{report}");
    release.set();
    assert!(stubborn.join().unwrap_err().is_cancelled());
}

#[test]
fn spawns_after_shutdown_report_shutdown() {
    let rt = Runtime::new().unwrap();
    let clone = rt.clone();
    rt.shutdown(Duration::from_secs(1));
    assert!(matches!(clone.spawn(|| 1).join(), Err(Error::Shutdown)));
    assert!(matches!(
        clone.spawn_async(async { 1 }).join(),
        Err(Error::Shutdown)
    ));
    let refused = clone.try_spawn(|| 1).unwrap_err();
    assert!(matches!(refused.error(), Error::Shutdown));
}

#[test]
fn a_spawner_waiting_for_room_is_released_by_shutdown() {
    let rt = Runtime::builder()
        .threads(1)
        .queue_bound(1)
        .build()
        .unwrap();
    let hog = common::spawn_until_cancelled(&rt);
    let spawner = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.spawn(|| 1).join())
    };
    // The spawner is blocked on the full strand until the shutdown closes it.
    let report = rt.shutdown(Duration::from_millis(20));
    assert!(
        matches!(spawner.join().unwrap(), Err(Error::Shutdown)),
        "{report}"
    );
    assert!(hog.join().unwrap_err().is_cancelled());
}

#[test]
fn dropping_the_runtime_cancels_coroutines_in_flight() {
    let rt = Runtime::new().unwrap();
    let sleeper = rt.spawn_async(std::future::pending::<()>());
    drop(rt);
    assert!(sleeper.join().unwrap_err().is_cancelled());
}

/// Two thread tasks that hold both pool threads until `release` is set (ignoring the
/// shutdown's request), and 20,000 tiny tasks queued behind them.
fn two_stuck_and_a_crowd(
    rt: &Runtime,
    release: &Arc<Event>,
) -> (Vec<plait::Handle<()>>, Vec<plait::Handle<u32>>) {
    let started = Arc::new(AtomicUsize::new(0));
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let (started, release) = (started.clone(), release.clone());
            rt.spawn(move || {
                started.fetch_add(1, Ordering::SeqCst);
                release.wait();
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::yield_now();
    }
    let crowd = (0..20_000u32).map(|i| rt.spawn(move || i)).collect();
    (stuck, crowd)
}

#[test]
fn queued_tasks_behind_stuck_ones_are_cancelled_not_unfinished_and_the_report_adds_up() {
    let _busy = common::BusyLoops::start(2);
    let rt = common::runtime(2);
    let release = Arc::new(Event::new());
    let (stuck, crowd) = two_stuck_and_a_crowd(&rt, &release);
    let in_flight = rt.metrics().thread.in_flight as u64;
    assert_eq!(in_flight, 20_002);
    let report = rt.shutdown(Duration::from_millis(20));
    let threads = report.threads;
    assert_eq!(
        threads.completed + threads.cancelled + threads.unfinished,
        in_flight,
        "{report}"
    );
    // Only the two that hold the pool and ignore the request are unfinished.
    assert_eq!(threads.unfinished, 2, "{report}");
    assert_eq!(threads.cancelled, 20_000, "{report}");
    release.set();
    for handle in stuck {
        assert!(handle.join().unwrap_err().is_cancelled());
    }
    for handle in crowd {
        assert!(handle.join().unwrap_err().is_cancelled());
    }
}

#[test]
fn cooperative_tasks_and_their_crowd_all_land_and_nothing_is_left_unfinished() {
    let _busy = common::BusyLoops::start(2);
    // Cooperative this time: the two stop when asked, and the crowd is cancelled too.
    let rt = common::runtime(2);
    let hogs = [
        common::spawn_until_cancelled(&rt),
        common::spawn_until_cancelled(&rt),
    ];
    let crowd: Vec<_> = (0..20_000u32).map(|i| rt.spawn(move || i)).collect();
    let in_flight = rt.metrics().thread.in_flight as u64;
    let report = rt.shutdown(Duration::from_millis(20));
    let threads = report.threads;
    assert_eq!(threads.completed + threads.cancelled, in_flight, "{report}");
    assert_eq!(threads.unfinished, 0, "{report}");
    let mut ran = 0;
    for handle in crowd {
        match handle.join() {
            Ok(_) => ran += 1,
            Err(error) => assert!(error.is_cancelled(), "{error}"),
        }
    }
    for hog in hogs {
        assert!(hog.join().unwrap_err().is_cancelled());
    }
    assert_eq!(ran, threads.completed, "{report}");
}
