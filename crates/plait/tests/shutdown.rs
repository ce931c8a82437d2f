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
