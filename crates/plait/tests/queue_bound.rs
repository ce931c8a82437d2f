//! The queue bound is backpressure that never deadlocks tasks that spawn tasks: a task
//! that spawns into its own full strand releases its slot while it waits, on both strands, so
//! parents that hold every slot and join their children still finish. The bound stays
//! real: beyond it, the strand holds at most one task per spawner blocked at the moment.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::within_a_minute;
use plait::Runtime;

const BOUND: usize = 4;
const PARENTS: usize = 4;
const CHILDREN: usize = 10;

fn bounded() -> Runtime {
    Runtime::builder()
        .threads(2)
        .coroutine_workers(2)
        .queue_bound(BOUND)
        .build()
        .unwrap()
}

/// Counts tasks alive at once (started and not yet ended) and keeps the peak.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Live {
    fn enter(&self) -> impl Drop + '_ {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Leave(self)
    }
}

struct Leave<'a>(&'a Live);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every child ran once (their numbers add up), and no more tasks were alive at once than
/// the bound and one per parent waiting for its children.
fn assert_all_ran_within_the_bound(total: usize, live: &Live) {
    let n = PARENTS * CHILDREN;
    assert_eq!(total, n * (n - 1) / 2);
    let peak = live.peak.load(Ordering::SeqCst);
    assert!(peak <= BOUND + PARENTS, "{peak} alive at once");
}

#[test]
fn thread_tasks_that_fill_the_bound_and_spawn_children_finish() {
    let rt = bounded();
    let live = Arc::new(Live::default());
    let total = within_a_minute("parents spawning children at the bound", {
        let rt = rt.clone();
        let live = Arc::clone(&live);
        move || {
            let parents: Vec<_> = (0..PARENTS)
                .map(|p| {
                    let (rt, live) = (rt.clone(), Arc::clone(&live));
                    rt.clone().spawn(move || {
                        let _alive = live.enter();
                        let children: Vec<_> = (0..CHILDREN)
                            .map(|c| {
                                let live = Arc::clone(&live);
                                rt.spawn(move || {
                                    let _alive = live.enter();
                                    p * CHILDREN + c
                                })
                            })
                            .collect();
                        children
                            .into_iter()
                            .map(|h| h.join().unwrap())
                            .sum::<usize>()
                    })
                })
                .collect();
            parents
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        }
    });
    assert_all_ran_within_the_bound(total, &live);
}

#[test]
fn coroutines_that_fill_the_bound_and_spawn_children_finish() {
    let rt = bounded();
    let live = Arc::new(Live::default());
    let total = within_a_minute("coroutines spawning children at the bound", {
        let rt = rt.clone();
        let live = Arc::clone(&live);
        move || {
            let parents: Vec<_> = (0..PARENTS)
                .map(|p| {
                    let (rt, live) = (rt.clone(), Arc::clone(&live));
                    rt.clone().spawn_async(async move {
                        let _alive = live.enter();
                        let children: Vec<_> = (0..CHILDREN)
                            .map(|c| {
                                let live = Arc::clone(&live);
                                rt.spawn_async(async move {
                                    let _alive = live.enter();
                                    tokio::task::yield_now().await;
                                    p * CHILDREN + c
                                })
                            })
                            .collect();
                        let mut sum = 0;
                        for child in children {
                            sum += child.await.unwrap();
                        }
                        sum
                    })
                })
                .collect();
            parents
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        }
    });
    assert_all_ran_within_the_bound(total, &live);
}

#[test]
fn try_spawn_still_refuses_at_the_bound() {
    let rt = bounded();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Arc::new(std::sync::Mutex::new(gate));
    let held: Vec<_> = (0..BOUND)
        .map(|_| {
            let gate = Arc::clone(&gate);
            rt.spawn(move || {
                let _ = gate.lock().unwrap().recv();
            })
        })
        .collect();
    let refused = rt.try_spawn(|| ()).map(|_| ()).unwrap_err();
    assert!(
        matches!(refused.error(), plait::Error::QueueFull { bound, .. } if *bound == BOUND),
        "{refused}"
    );
    for _ in 0..BOUND {
        release.send(()).unwrap();
    }
    for handle in held {
        handle.join().unwrap();
    }
}

fn runtime_with_bound(bound: usize) -> Runtime {
    Runtime::builder()
        .threads(2)
        .coroutine_workers(2)
        .queue_bound(bound)
        .build()
        .unwrap()
}

#[test]
fn a_chain_of_grandchildren_at_a_bound_of_one_finishes_on_both_strands() {
    let rt = runtime_with_bound(1);
    let threads = within_a_minute("a chain of thread tasks at a bound of one", {
        let rt = rt.clone();
        move || {
            let (a, b) = (rt.clone(), rt.clone());
            rt.spawn(move || {
                a.spawn(move || b.spawn(|| 1).join().unwrap() + 1)
                    .join()
                    .unwrap()
                    + 1
            })
            .join()
            .unwrap()
        }
    });
    assert_eq!(threads, 3);
    let coroutines = within_a_minute("a chain of coroutines at a bound of one", {
        let rt = rt.clone();
        move || {
            let (a, b) = (rt.clone(), rt.clone());
            rt.spawn_async(async move {
                a.spawn_async(async move { b.spawn_async(async { 1 }).await.unwrap() + 1 })
                    .await
                    .unwrap()
                    + 1
            })
            .join()
            .unwrap()
        }
    });
    assert_eq!(coroutines, 3);
}

fn fib_threads(rt: &Runtime, n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (left, right) = (rt.clone(), rt.clone());
    let a = rt.spawn(move || fib_threads(&left, n - 1));
    let b = rt.spawn(move || fib_threads(&right, n - 2));
    a.join().unwrap() + b.join().unwrap()
}

fn fib_coroutines(rt: Runtime, n: u64) -> std::pin::Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if n < 2 {
            return n;
        }
        let a = rt.spawn_async(fib_coroutines(rt.clone(), n - 1));
        let b = rt.spawn_async(fib_coroutines(rt.clone(), n - 2));
        a.await.unwrap() + b.await.unwrap()
    })
}

#[test]
fn recursive_fibonacci_by_spawn_and_join_at_a_bound_of_four_finishes_on_both_strands() {
    let rt = runtime_with_bound(4);
    let threads = within_a_minute("fib(15) by thread tasks at a bound of four", {
        let rt = rt.clone();
        move || fib_threads(&rt, 15)
    });
    assert_eq!(threads, 610);
    let coroutines = within_a_minute("fib(15) by coroutines at a bound of four", {
        let rt = rt.clone();
        move || rt.block_on(fib_coroutines(rt.clone(), 15))
    });
    assert_eq!(coroutines, 610);
}

#[test]
fn a_joins_second_closure_run_elsewhere_may_spawn_at_the_bound() {
    let rt = runtime_with_bound(1);
    let total = within_a_minute("a join whose second closure spawns at the bound", {
        let rt = rt.clone();
        move || {
            let inner = rt.clone();
            rt.spawn(move || {
                let spawner = inner.clone();
                let (a, b) = inner
                    .join(
                        || (0..100_000u64).sum::<u64>(),
                        move || spawner.spawn(|| 1u64).join().unwrap(),
                    )
                    .unwrap();
                a + b
            })
            .join()
            .unwrap()
        }
    });
    assert_eq!(total, 4_999_950_001);
}
