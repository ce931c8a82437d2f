//! Task groups: the first failure cancels the rest; results in order; cancelled on drop.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use plait::{Error, sync::Event};

#[derive(Debug, thiserror::Error)]
#[error("bad record {0}")]
struct BadRecord(u32);

#[test]
fn results_come_back_in_spawn_order() {
    let rt = common::runtime(2);
    let mut group = rt.group();
    for i in 0..20u32 {
        if i % 2 == 0 {
            group.spawn(move || {
                std::thread::sleep(Duration::from_millis(u64::from(20 - i)));
                Ok::<_, BadRecord>(i)
            });
        } else {
            group.spawn_async(async move {
                tokio::time::sleep(Duration::from_millis(u64::from(20 - i))).await;
                Ok::<_, BadRecord>(i)
            });
        }
    }
    assert_eq!(group.len(), 20);
    assert_eq!(group.join_all().unwrap(), (0..20).collect::<Vec<_>>());
}

#[test]
fn the_first_error_cancels_the_siblings_and_is_returned() {
    let rt = common::runtime(2);
    let waiter_dropped = Arc::new(AtomicBool::new(false));
    let spinner_stopped = Arc::new(AtomicBool::new(false));
    let mut group = rt.group::<u32>();
    {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        // Made outside the future, so that it drops whether or not the future ever ran.
        let flag = Flag(waiter_dropped.clone());
        group.spawn_async(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok::<_, BadRecord>(0)
        });
    }
    {
        let stopped = spinner_stopped.clone();
        group.spawn(move || {
            while !plait::task::is_cancelled() {
                std::hint::spin_loop();
            }
            stopped.store(true, Ordering::SeqCst);
            Ok::<_, BadRecord>(0)
        });
    }
    group.spawn(|| Err(BadRecord(3)));
    let err = group.join_all().unwrap_err();
    match &err {
        Error::Failed(inner) => {
            assert_eq!(inner.downcast_ref::<BadRecord>().unwrap().0, 3);
        }
        other => panic!("expected the task's own error, got {other}"),
    }
    assert!(waiter_dropped.load(Ordering::SeqCst));
    assert!(spinner_stopped.load(Ordering::SeqCst));
}

#[test]
fn a_panic_counts_as_the_groups_failure() {
    let rt = common::runtime(2);
    let mut group = rt.group::<u32>();
    group.spawn_async(async { std::future::pending::<Result<u32, BadRecord>>().await });
    group.spawn(|| -> Result<u32, BadRecord> { panic!("group member panicked") });
    let err = group.join_all().unwrap_err();
    assert!(err.is_panic(), "{err}");
}

#[test]
fn dropping_the_group_cancels_its_tasks() {
    let rt = common::runtime(2);
    let started = Arc::new(Event::new());
    let (stopped_tx, stopped) = std::sync::mpsc::channel::<()>();
    {
        let mut group = rt.group::<()>();
        let started_in_task = started.clone();
        group.spawn(move || {
            started_in_task.set();
            while !plait::task::is_cancelled() {
                std::hint::spin_loop();
            }
            stopped_tx.send(()).unwrap();
            Ok::<_, BadRecord>(())
        });
        started.wait();
    }
    // The drop, not a shutdown, must stop the task.
    stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("the task was not cancelled by the group's drop");
}

#[test]
fn dropping_join_all_async_half_way_cancels_the_tasks() {
    let rt = common::runtime(2);
    let (stopped_tx, stopped) = std::sync::mpsc::channel::<()>();
    let mut group = rt.group::<()>();
    group.spawn(move || {
        while !plait::task::is_cancelled() {
            std::hint::spin_loop();
        }
        stopped_tx.send(()).unwrap();
        Ok::<_, BadRecord>(())
    });
    // Give up on the group after a moment, as a `select!` or a timeout would.
    let outcome = rt.block_on(plait::timeout(
        Duration::from_millis(20),
        group.join_all_async(),
    ));
    assert!(outcome.unwrap_err().is_timeout());
    stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("the abandoned group's task kept running");
}

#[test]
fn join_all_async_works_inside_a_coroutine() {
    let rt = common::runtime(2);
    let rt2 = rt.clone();
    let out = rt.block_on(async move {
        let mut group = rt2.group();
        group.spawn(|| Ok::<_, BadRecord>(1));
        group.spawn_async(async { Ok::<_, BadRecord>(2) });
        group.join_all_async().await
    });
    assert_eq!(out.unwrap(), [1, 2]);
}

#[test]
fn an_empty_group_joins_to_nothing() {
    let rt = common::runtime(2);
    let group = rt.group::<u8>();
    assert!(group.is_empty());
    assert!(group.join_all().unwrap().is_empty());
}
