//! `Runtime::join` from inside the pool: the second closure waits on the joiner's stack, is
//! popped back and run in place when nobody took it, and is waited for when a thief did.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use plait::Runtime;

/// Runs `f` on a pool thread of `rt`, as rayon's `install` does.
fn on_pool<T: Send + 'static>(rt: &Runtime, f: impl FnOnce(&Runtime) -> T + Send + 'static) -> T {
    let inner = rt.clone();
    rt.spawn(move || f(&inner)).join().unwrap()
}

#[test]
fn both_sides_run_and_borrow_the_callers_stack() {
    let rt = common::runtime(2);
    let out = on_pool(&rt, |rt| {
        let mut data = vec![0u32; 1000];
        let (left, right) = data.split_at_mut(500);
        let (a, b) = rt
            .join(
                || {
                    left.iter_mut().for_each(|x| *x = 1);
                    "left"
                },
                || {
                    right.iter_mut().for_each(|x| *x = 2);
                    "right"
                },
            )
            .unwrap();
        (a, b, data.iter().map(|&x| u64::from(x)).sum::<u64>())
    });
    assert_eq!(out, ("left", "right", 1500));
}

#[test]
fn a_panic_on_either_side_is_an_error_and_the_other_side_still_runs() {
    let rt = common::runtime(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let errors = {
        let ran = ran.clone();
        on_pool(&rt, move |rt| {
            let left = rt.join(
                || -> u8 { panic!("left side") },
                || ran.fetch_add(1, Ordering::SeqCst),
            );
            let right = rt.join(
                || ran.fetch_add(1, Ordering::SeqCst),
                || -> u8 { panic!("right side") },
            );
            (
                left.err().map(|e| e.to_string()),
                right.err().map(|e| e.to_string()),
            )
        })
    };
    assert!(errors.0.unwrap().contains("left side"));
    assert!(errors.1.unwrap().contains("right side"));
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn a_stolen_second_closure_runs_on_another_thread_and_its_joiner_waits_for_it() {
    let rt = common::runtime(2);
    for _ in 0..20 {
        let (joiner, thief, value) = on_pool(&rt, |rt| {
            let started = AtomicBool::new(false);
            let thief = Mutex::new(None::<ThreadId>);
            let ((), value) = rt
                .join(
                    || {
                        // Keep the joiner busy until the other thread has taken `b`.
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while !started.load(Ordering::Acquire) && Instant::now() < deadline {
                            std::hint::spin_loop();
                        }
                    },
                    || {
                        *thief.lock().unwrap() = Some(std::thread::current().id());
                        started.store(true, Ordering::Release);
                        // Long enough that the joiner runs out of spinning and parks.
                        std::thread::sleep(Duration::from_millis(20));
                        // The thief is a pool thread: the current runtime is there too.
                        plait::Runtime::current().map(|_| 42u64).unwrap_or(0)
                    },
                )
                .unwrap();
            (
                std::thread::current().id(),
                thief.into_inner().unwrap(),
                value,
            )
        });
        assert_eq!(value, 42);
        assert_ne!(
            Some(joiner),
            thief,
            "the second closure was taken by another thread"
        );
    }
}

#[test]
fn a_task_left_above_the_second_closure_does_not_stop_it_running_in_place() {
    let rt = common::runtime(1);
    let detached_ran = Arc::new(AtomicBool::new(false));
    let flag = detached_ran.clone();
    let (a, b) = on_pool(&rt, move |rt| {
        let rt2 = rt.clone();
        rt.join(
            move || {
                // Queued above the join's entry in this thread's deque, and never joined.
                drop(rt2.spawn(move || flag.store(true, Ordering::SeqCst)));
                1
            },
            || 2,
        )
        .unwrap()
    });
    assert_eq!((a, b), (1, 2));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !detached_ran.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the detached task never ran");
        std::thread::yield_now();
    }
}

fn sum(rt: &Runtime, lo: u64, hi: u64) -> u64 {
    if hi - lo <= 1 {
        return lo;
    }
    let mid = lo + (hi - lo) / 2;
    let (a, b) = rt.join(|| sum(rt, lo, mid), || sum(rt, mid, hi)).unwrap();
    a + b
}

#[test]
fn recursive_joins_down_to_single_items_stress() {
    let (thread_counts, rounds): (&[usize], u64) = if common::under_memcheck() {
        (&[2], 2)
    } else {
        (&[1, 2, 4], 20)
    };
    for &threads in thread_counts {
        let rt = common::runtime(threads);
        for round in 0..rounds {
            let n = 50_000 + round * 997;
            assert_eq!(on_pool(&rt, move |rt| sum(rt, 0, n)), n * (n - 1) / 2);
        }
    }
}

#[test]
fn joins_from_many_tasks_at_once_beside_spawns() {
    let rt = common::runtime(2);
    let spawned = Arc::new(AtomicU64::new(0));
    let tasks = if common::under_memcheck() { 4 } else { 16 };
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let (inner, spawned) = (rt.clone(), spawned.clone());
            rt.spawn(move || {
                let n = 20_000 + i;
                let total = sum(&inner, 0, n);
                // Spawned tasks interleave with the joins' entries in the deques.
                let children: Vec<_> = (0..100)
                    .map(|_| {
                        let spawned = spawned.clone();
                        inner.spawn(move || spawned.fetch_add(1, Ordering::Relaxed))
                    })
                    .collect();
                for child in children {
                    child.join().unwrap();
                }
                (total, n * (n - 1) / 2)
            })
        })
        .collect();
    for handle in handles {
        let (total, expected) = handle.join().unwrap();
        assert_eq!(total, expected);
    }
    assert_eq!(spawned.load(Ordering::Relaxed), tasks * 100);
}

#[test]
fn a_join_made_while_the_runtime_shuts_down_reports_its_second_closure_cancelled() {
    let rt = common::runtime(2);
    let (sent, received) = std::sync::mpsc::channel();
    let inner = rt.clone();
    drop(rt.spawn(move || {
        // Wait for the shutdown to cancel this task, then join as the strand is cancelling.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !plait::task::is_cancelled() && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let ran_b = AtomicBool::new(false);
        let outcome = inner.join(|| 1, || ran_b.store(true, Ordering::SeqCst));
        let _ = sent.send((outcome.map_err(|e| e.is_cancelled()), ran_b.into_inner()));
    }));
    // At its deadline the shutdown asks running tasks to stop: this one then joins.
    let _ = rt.shutdown(Duration::from_millis(50));
    let (outcome, ran_b) = received
        .recv_timeout(Duration::from_secs(30))
        .expect("the task reported");
    assert_eq!(
        outcome,
        Err(true),
        "the second closure is cancelled, not run"
    );
    assert!(!ran_b);
}
