//! `Runtime::metrics`: the load strand by strand, as the tasks really stand.

mod common;

use std::sync::Arc;

use common::within_a_minute;
use plait::sync::Event;
use plait::{Runtime, RuntimeMetrics, Strand};

/// Reads the metrics until `ready` holds for them (the tasks are getting there), and
/// returns them; fails the test after a minute.
fn metrics_once(rt: &Runtime, what: &str, ready: fn(&RuntimeMetrics) -> bool) -> RuntimeMetrics {
    let rt = rt.clone();
    within_a_minute(what, move || {
        loop {
            let metrics = rt.metrics();
            if ready(&metrics) {
                return metrics;
            }
            std::thread::yield_now();
        }
    })
}

#[test]
fn an_idle_runtime_shows_its_workers_and_bounds_and_nothing_in_flight() {
    let rt = Runtime::builder()
        .threads(2)
        .coroutine_workers(3)
        .queue_bound(50)
        .build()
        .unwrap();
    let metrics = rt.metrics();
    assert_eq!(metrics.thread.workers, 2);
    assert_eq!(metrics.coroutine.workers, 3);
    for strand in Strand::ALL {
        let one = metrics.strand(strand).unwrap();
        assert_eq!(one.queue_bound, 50, "{strand}");
        assert_eq!(one.in_flight, 0, "{strand}");
        assert_eq!(one.waiting_for_tasks, 0, "{strand}");
    }
    assert!(metrics.strand(Strand::Auto).is_none());
    assert_eq!(metrics.spare_threads, 0);
    assert_eq!(metrics.process_workers_started, 0);
    assert_eq!(metrics.in_flight(), 0);
}

#[test]
fn blocked_and_queued_tasks_count_in_flight_on_their_own_strand() {
    let rt = common::runtime(2);
    let release = Arc::new(Event::new());
    // Three thread tasks on two threads: two block, one waits in the queue.
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let release = Arc::clone(&release);
            rt.spawn(move || release.wait())
        })
        .collect();
    let coroutines: Vec<_> = (0..4)
        .map(|_| {
            let release = Arc::clone(&release);
            rt.spawn_async(async move { release.wait_async().await })
        })
        .collect();
    let metrics = rt.metrics();
    assert_eq!(metrics.thread.in_flight, 3, "{metrics:?}");
    assert_eq!(metrics.coroutine.in_flight, 4, "{metrics:?}");
    assert_eq!(metrics.process.in_flight, 0, "{metrics:?}");
    assert_eq!(metrics.in_flight(), 7);
    // Blocked on an event, not on tasks: no slot is released.
    assert_eq!(metrics.thread.waiting_for_tasks, 0, "{metrics:?}");
    assert_eq!(metrics.coroutine.waiting_for_tasks, 0, "{metrics:?}");

    release.set();
    for handle in threads {
        handle.join().unwrap();
    }
    for handle in coroutines {
        handle.join().unwrap();
    }
    assert!(rt.shutdown(std::time::Duration::from_secs(10)).is_clean());
    assert_eq!(rt.metrics().in_flight(), 0);
}

#[test]
fn a_thread_task_joining_a_running_child_waits_for_tasks_with_a_spare_in_its_place() {
    let rt = common::runtime(2);
    let child_started = Arc::new(Event::new());
    let release = Arc::new(Event::new());
    let parent = {
        let rt = rt.clone();
        let (child_started, release) = (Arc::clone(&child_started), Arc::clone(&release));
        rt.clone().spawn(move || {
            let started = Arc::clone(&child_started);
            let child = rt.spawn(move || {
                started.set();
                release.wait();
            });
            // The other pool thread has the child: the join below cannot run it here.
            child_started.wait();
            child.join().unwrap();
        })
    };
    // The join releases the parent's slot, spins, then has a spare take its place.
    let metrics = metrics_once(&rt, "the parent waiting for its child, covered", |m| {
        m.thread.waiting_for_tasks == 1 && m.spare_threads == 1
    });
    assert_eq!(metrics.thread.in_flight, 2, "{metrics:?}");
    release.set();
    parent.join().unwrap();
    let metrics = rt.metrics();
    assert_eq!(metrics.thread.waiting_for_tasks, 0, "{metrics:?}");
}

#[test]
fn a_coroutine_awaiting_an_unfinished_handle_waits_for_tasks() {
    let rt = common::runtime(2);
    let release = Arc::new(Event::new());
    let blocked = {
        let release = Arc::clone(&release);
        rt.spawn(move || release.wait())
    };
    let awaiting = rt.spawn_async(async move { blocked.await.unwrap() });
    let metrics = metrics_once(&rt, "the coroutine awaiting the thread task", |m| {
        m.coroutine.waiting_for_tasks == 1
    });
    assert_eq!(metrics.coroutine.in_flight, 1, "{metrics:?}");
    assert_eq!(metrics.thread.in_flight, 1, "{metrics:?}");
    release.set();
    awaiting.join().unwrap();
    let metrics = metrics_once(&rt, "the coroutine counted out", |m| m.in_flight() == 0);
    assert_eq!(metrics.coroutine.waiting_for_tasks, 0, "{metrics:?}");
}
