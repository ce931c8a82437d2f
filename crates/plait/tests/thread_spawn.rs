//! The thread strand's spawn, join and backpressure.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use plait::{Error, Runtime};

#[test]
fn results_come_back_on_their_handles() {
    let rt = common::runtime(2);
    let handles: Vec<_> = (0..1000u64).map(|i| rt.spawn(move || i * 3)).collect();
    let results: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, (0..1000).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn a_panic_becomes_an_error_and_the_pool_lives_on() {
    let rt = common::runtime(2);
    let bad = rt.spawn(|| -> u32 { panic!("task {} failed", 7) });
    match bad.join() {
        Err(Error::Panicked { message }) => assert_eq!(message, "task 7 failed"),
        other => panic!("expected a panic error, got {other:?}"),
    }
    let after: u32 = (0..100)
        .map(|i| rt.spawn(move || i))
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(after, 4950);
}

#[test]
fn nested_spawn_and_join_a_thousand_deep_on_two_threads_does_not_deadlock() {
    fn nest(rt: Runtime, depth: u32) -> u32 {
        if depth == 0 {
            return 0;
        }
        let inner = rt.clone();
        rt.spawn(move || nest(inner, depth - 1)).join().unwrap() + 1
    }
    let rt = common::runtime(2);
    let top = rt.clone();
    assert_eq!(rt.spawn(move || nest(top, 1000)).join().unwrap(), 1000);
}

#[test]
fn many_tasks_each_joining_children_never_exhaust_the_pool() {
    let rt = common::runtime(2);
    let parents: Vec<_> = (0..64u64)
        .map(|i| {
            let rt2 = rt.clone();
            rt.spawn(move || {
                let kids: Vec<_> = (0..16u64).map(|j| rt2.spawn(move || i * j)).collect();
                kids.into_iter().map(|k| k.join().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let total: u64 = parents.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(total, (0..64).sum::<u64>() * (0..16).sum::<u64>());
}

#[test]
fn try_spawn_hands_the_closure_back_when_the_strand_is_full() {
    let rt = Runtime::builder()
        .threads(1)
        .queue_bound(2)
        .build()
        .unwrap();
    let (release, blocker) = common::block_a_thread(&rt);
    let queued = rt.spawn(|| 1);
    let refused = rt.try_spawn(|| 2).unwrap_err();
    assert!(matches!(refused.error(), Error::QueueFull { bound: 2, .. }));
    let closure = refused.into_task();
    assert_eq!(closure(), 2, "the refused closure comes back whole");
    release.send(()).unwrap();
    blocker.join().unwrap();
    assert_eq!(queued.join().unwrap(), 1);
    assert_eq!(rt.try_spawn(|| 3).unwrap().join().unwrap(), 3);
}

#[test]
fn spawn_waits_for_room_instead_of_exceeding_the_bound() {
    // More threads than the bound: only the bound can keep the peak at 2.
    let rt = Runtime::builder()
        .threads(4)
        .queue_bound(2)
        .build()
        .unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let (live, peak) = (live.clone(), peak.clone());
            rt.spawn(move || {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Long enough for four threads to overlap, were they allowed to.
                std::thread::sleep(std::time::Duration::from_millis(1));
                live.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // A joined task may still count as in flight for an instant; a shutdown waits.
    assert!(rt.shutdown(std::time::Duration::from_secs(10)).is_clean());
    assert_eq!(rt.metrics().in_flight(), 0);
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "the bound of 2 was exceeded: {} at once",
        peak.load(Ordering::SeqCst)
    );
}

#[test]
fn tasks_spawned_from_inside_a_full_pool_make_progress() {
    // Every pool thread spawns more than the bound allows: spawn must help, not block.
    let rt = Runtime::builder()
        .threads(2)
        .queue_bound(3)
        .build()
        .unwrap();
    let outer: Vec<_> = (0..2)
        .map(|_| {
            let rt2 = rt.clone();
            rt.spawn(move || {
                let inner: Vec<_> = (0..50u32).map(|i| rt2.spawn(move || i)).collect();
                inner.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
            })
        })
        .collect();
    for h in outer {
        assert_eq!(h.join().unwrap(), 1225);
    }
}

#[test]
fn stress_many_spawning_threads_lose_no_task() {
    let rt = common::runtime(2);
    let ran = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (rt, ran) = (&rt, &ran);
            s.spawn(move || {
                let handles: Vec<_> = (0..5_000)
                    .map(|i| {
                        let ran = ran.clone();
                        rt.spawn(move || {
                            ran.fetch_add(1, Ordering::Relaxed);
                            i
                        })
                    })
                    .collect();
                for (i, h) in handles.into_iter().enumerate() {
                    assert_eq!(h.join().unwrap(), i);
                }
            });
        }
    });
    assert_eq!(ran.load(Ordering::Relaxed), 20_000);
}

#[test]
fn join_runs_both_sides_and_reports_a_panic() {
    let rt = common::runtime(2);
    assert_eq!(rt.join(|| 1, || "two").unwrap(), (1, "two"));
    let err = rt
        .join(|| 1, || -> u8 { panic!("right side") })
        .unwrap_err();
    assert!(err.to_string().contains("right side"));
}

#[test]
fn a_detached_task_still_runs() {
    let rt = common::runtime(1);
    let (done_tx, done) = mpsc::channel();
    drop(rt.spawn(move || done_tx.send(42).unwrap()));
    assert_eq!(done.recv().unwrap(), 42);
}

#[test]
fn join_returns_even_when_every_pool_thread_is_busy() {
    let rt = common::runtime(1);
    let (release, blocker) = common::block_a_thread(&rt);
    // The only pool thread is busy: both closures run here.
    assert_eq!(rt.join(|| 1, || 2).unwrap(), (1, 2));
    release.send(()).unwrap();
    blocker.join().unwrap();
}

#[test]
fn join_inside_tasks_splits_work_recursively() {
    fn sum(rt: &Runtime, xs: &[u64]) -> u64 {
        if xs.len() <= 64 {
            return xs.iter().sum();
        }
        let (left, right) = xs.split_at(xs.len() / 2);
        let (a, b) = rt.join(|| sum(rt, left), || sum(rt, right)).unwrap();
        a + b
    }
    let rt = common::runtime(2);
    let xs: Vec<u64> = (0..100_000).collect();
    let rt2 = rt.clone();
    let total = rt.spawn(move || sum(&rt2, &xs)).join().unwrap();
    assert_eq!(total, 4_999_950_000);
}

struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("a destructor that panics");
    }
}

#[test]
fn a_panicking_destructor_of_a_detached_result_does_not_leak_the_task() {
    let rt = common::runtime(1);
    let go = Arc::new(plait::sync::Event::new());
    let task = {
        let go = go.clone();
        rt.spawn(move || {
            go.wait();
            PanicOnDrop
        })
    };
    // Detached first, so the pool thread drops the value when the task ends.
    drop(task);
    go.set();
    let report = rt.shutdown(std::time::Duration::from_secs(10));
    assert!(report.is_clean(), "{report}");
    assert_eq!(rt.metrics().in_flight(), 0);
}

/// Counts the values alive: made by `make`, gone when dropped.
#[derive(Clone)]
struct Alive(Arc<AtomicUsize>);

struct Counted(Arc<AtomicUsize>);

impl Alive {
    fn make(&self) -> Counted {
        self.0.fetch_add(1, Ordering::SeqCst);
        Counted(Arc::clone(&self.0))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every task is freed once, whoever lets go of it last (its handle, a cancel handle, the
/// queue, the thread that ran it): each closure and each output is dropped, none twice.
#[test]
fn every_closure_and_output_is_dropped_once_whoever_lets_go_last() {
    let rt = common::runtime(2);
    let alive = Alive(Arc::new(AtomicUsize::new(0)));
    // Joined, detached, cancelled while queued and cancelled from a cancel handle, over
    // many rounds, behind a blocker so some are still queued when their handles go.
    for round in 0..200 {
        let go = Arc::new(plait::sync::Event::new());
        let blockers: Vec<_> = (0..2)
            .map(|_| {
                let go = Arc::clone(&go);
                rt.spawn(move || go.wait())
            })
            .collect();
        let mut handles = Vec::new();
        for i in 0..8 {
            let input = alive.make();
            let output = alive.clone();
            handles.push(rt.spawn(move || {
                drop(input);
                output.make()
            }));
            if i % 4 == 1 {
                let last = handles.pop().unwrap();
                let canceller = last.cancel_handle();
                drop(last);
                if round % 2 == 0 {
                    canceller.cancel();
                }
            }
        }
        if round % 3 == 0 {
            for handle in &handles[..2] {
                handle.cancel();
            }
        }
        go.set();
        for (i, handle) in handles.into_iter().enumerate() {
            if i % 2 == 0 {
                drop(handle.join());
            }
        }
        for blocker in blockers {
            blocker.join().unwrap();
        }
    }
    rt.scope(|scope| {
        for _ in 0..100 {
            let input = alive.make();
            let output = alive.clone();
            drop(scope.spawn(move || {
                drop(input);
                output.make()
            }));
        }
    });
    let report = rt.shutdown(std::time::Duration::from_secs(10));
    assert!(report.is_clean(), "{report}");
    assert_eq!(alive.count(), 0, "values never dropped");
}
