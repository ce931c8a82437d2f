//! What a pool thread does while it waits: it runs only what it waits for, and has a spare
//! thread take its place otherwise, so a task never runs on top of a task that it waits for.

mod common;

use std::sync::{Arc, mpsc};
use std::time::Duration;

use plait::Runtime;
use plait::sync::Event;

/// Spawns `x`, which must block in a pool wait (for something that waits for `gate`) once
/// it has sent on `waiting`; then a task that joins `x`'s handle; then opens the gate and
/// returns the joiner's result. If the joiner were run on top of `x` on `x`'s thread, it
/// could never see `x` resume.
fn join_a_waiting_task(
    rt: &Runtime,
    x: impl FnOnce(Runtime, Arc<Event>, mpsc::Sender<()>) -> u32 + Send + 'static,
) -> u32 {
    let gate = Arc::new(Event::new());
    let (waiting_tx, waiting) = mpsc::channel();
    let hx = {
        let (rt, gate) = (rt.clone(), gate.clone());
        rt.clone().spawn(move || x(rt, gate, waiting_tx))
    };
    waiting
        .recv_timeout(MINUTE)
        .expect("the first task waits within a minute");
    let (started_tx, started) = mpsc::channel();
    let hy = rt.spawn(move || {
        started_tx.send(()).unwrap();
        hx.join().unwrap() + 1
    });
    // The joiner has started somewhere: on `x`'s thread, before the fix.
    started
        .recv_timeout(MINUTE)
        .expect("the joiner starts within a minute");
    gate.set();
    common::within_a_minute("the joiner of a waiting task returns", move || {
        hy.join().unwrap()
    })
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_task_joining_a_task_that_waits_in_a_join_is_not_run_on_top_of_it() {
    let rt = common::runtime(2);
    let result = join_a_waiting_task(&rt, |rt, gate, waiting| {
        // `z` runs on the other pool thread, so `x`'s join has to wait for it.
        let (z_started_tx, z_started) = mpsc::channel();
        let z = rt.spawn(move || {
            z_started_tx.send(()).unwrap();
            gate.wait();
            41
        });
        z_started.recv_timeout(MINUTE).unwrap();
        waiting.send(()).unwrap();
        z.join().unwrap()
    });
    assert_eq!(result, 42);
}

#[test]
fn a_task_joining_a_task_that_waits_for_a_coroutine_is_not_run_on_top_of_it() {
    // One pool thread: before the fix, the joiner could only run on top of `x`.
    let rt = common::runtime(1);
    let result = join_a_waiting_task(&rt, |rt, gate, waiting| {
        let z = rt.spawn_async(async move {
            gate.wait_async().await;
            41
        });
        waiting.send(()).unwrap();
        z.join().unwrap()
    });
    assert_eq!(result, 42);
}

#[test]
fn a_task_joining_a_task_that_waits_at_the_end_of_a_scope_is_not_run_on_top_of_it() {
    let rt = common::runtime(2);
    let result = join_a_waiting_task(&rt, |rt, gate, waiting| {
        rt.scope(|s| {
            let (started_tx, started) = mpsc::channel();
            let gate = &gate;
            let task = s.spawn(move || {
                started_tx.send(()).unwrap();
                gate.wait();
            });
            // The scoped task runs on the other pool thread; the scope waits for it.
            started.recv_timeout(MINUTE).unwrap();
            waiting.send(()).unwrap();
            drop(task);
        });
        41
    });
    assert_eq!(result, 42);
}

#[test]
fn work_queued_behind_a_blocked_pool_thread_runs_on_a_spare() {
    // One pool thread, blocked waiting for a coroutine that waits for a task queued on that
    // very thread: a spare thread runs it (before, the waiting thread ran it on top).
    let rt = common::runtime(1);
    let inner_rt = rt.clone();
    let done = rt.spawn(move || {
        let ready = Arc::new(Event::new());
        let setter = ready.clone();
        let waiter = ready.clone();
        let coroutine = inner_rt.spawn_async(async move {
            waiter.wait_async().await;
            7
        });
        let queued = inner_rt.spawn(move || {
            setter.set();
            std::thread::current().name().map(str::to_owned)
        });
        let seven = coroutine.join().unwrap();
        (seven, queued.join().unwrap())
    });
    let (result, ran_on) =
        common::within_a_minute("a task queued behind a blocked thread runs", move || {
            done.join().unwrap()
        });
    assert_eq!(result, 7);
    let ran_on = ran_on.unwrap_or_default();
    assert!(
        ran_on.contains("-spare-"),
        "the queued task ran on a spare thread, not on {ran_on:?}"
    );
}

#[test]
fn a_spare_runs_what_it_spawns_and_joins_in_place() {
    // One pool thread, blocked; the spare that takes its place runs a task that spawns and
    // joins a child. A spare has a deque of its own, so the child runs in place on it rather
    // than calling for yet another spare.
    let rt = common::runtime(1);
    let inner_rt = rt.clone();
    let names = rt.spawn(move || {
        let gate = Arc::new(Event::new());
        let opener = gate.clone();
        let blocker = inner_rt.spawn_async(async move { gate.wait_async().await });
        let spawner = inner_rt.clone();
        let parent = inner_rt.spawn(move || {
            let me = std::thread::current().name().map(str::to_owned);
            let child = spawner
                .spawn(|| std::thread::current().name().map(str::to_owned))
                .join()
                .unwrap();
            opener.set();
            (me, child)
        });
        blocker.join().unwrap();
        parent.join().unwrap()
    });
    let (parent, child) = common::within_a_minute("the spare's own join returns", move || {
        names.join().unwrap()
    });
    let parent = parent.unwrap_or_default();
    assert!(parent.contains("-spare-"), "the parent ran on {parent:?}");
    assert_eq!(child.unwrap_or_default(), parent, "the child ran in place");
}

#[test]
fn a_join_runs_its_task_in_place_when_it_is_still_queued_below_others() {
    // One pool thread that spawns a batch and joins it in order: each task is found below
    // the ones spawned after it and run in place, on the pool thread itself.
    let rt = common::runtime(1);
    let inner_rt = rt.clone();
    let names = rt
        .spawn(move || {
            let me = std::thread::current().name().map(str::to_owned);
            let batch: Vec<_> = (0..16)
                .map(|_| inner_rt.spawn(|| std::thread::current().name().map(str::to_owned)))
                .collect();
            let names: Vec<_> = batch.into_iter().map(|h| h.join().unwrap()).collect();
            (me, names)
        })
        .join()
        .unwrap();
    let (me, names) = names;
    assert!(me.is_some());
    assert!(
        names.iter().all(|name| *name == me),
        "every task ran in place on {me:?}: {names:?}"
    );
}

#[test]
fn many_waits_nested_across_threads_all_finish() {
    // Stress: tasks that spawn, join, open scopes and wait for coroutines, on two threads,
    // so that waits block on each other across threads and spares come and go.
    fn tree(rt: &Runtime, depth: u32, seed: u64) -> u64 {
        if depth == 0 {
            return seed % 7;
        }
        match seed % 4 {
            0 => {
                let (a, b) = (rt.clone(), rt.clone());
                let left = rt.spawn(move || tree(&a, depth - 1, seed / 4 + 1));
                let right = rt.spawn(move || tree(&b, depth - 1, seed / 4 + 2));
                right.join().unwrap() + left.join().unwrap()
            }
            1 => rt.scope(|s| {
                let a = s.spawn(|| tree(rt, depth - 1, seed / 4 + 3));
                let b = s.spawn(|| tree(rt, depth - 1, seed / 4 + 4));
                a.join().unwrap() + b.join().unwrap()
            }),
            2 => {
                let (a, b) = rt
                    .join(
                        || tree(rt, depth - 1, seed / 4 + 5),
                        || tree(rt, depth - 1, seed / 4 + 6),
                    )
                    .unwrap();
                a + b
            }
            _ => {
                let (spawner, inner) = (rt.clone(), rt.clone());
                rt.spawn_async(async move {
                    tokio::time::sleep(Duration::from_micros(50)).await;
                    spawner
                        .spawn(move || tree(&inner, depth - 1, seed / 4 + 7))
                        .await
                        .unwrap()
                })
                .join()
                .unwrap()
            }
        }
    }
    /// What `tree` computes, without tasks.
    fn expected(depth: u32, seed: u64) -> u64 {
        if depth == 0 {
            return seed % 7;
        }
        match seed % 4 {
            0 => expected(depth - 1, seed / 4 + 1) + expected(depth - 1, seed / 4 + 2),
            1 => expected(depth - 1, seed / 4 + 3) + expected(depth - 1, seed / 4 + 4),
            2 => expected(depth - 1, seed / 4 + 5) + expected(depth - 1, seed / 4 + 6),
            _ => expected(depth - 1, seed / 4 + 7),
        }
    }
    let rt = common::runtime(2);
    let expected: u64 = (0..32).map(|seed| expected(6, seed)).sum();
    let handles: Vec<_> = (0..32)
        .map(|seed| {
            let inner = rt.clone();
            rt.spawn(move || tree(&inner, 6, seed))
        })
        .collect();
    let total = common::within_a_minute("the nested waits finish", move || {
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(total, expected);
}

#[test]
fn the_next_wait_calls_the_same_spare_back() {
    // Two rounds of a pool thread blocked while a task queued behind it runs: the spare of
    // the first round, idle since, takes the second; no second spare starts.
    let rt = common::runtime(1);
    let round = |rt: &Runtime| {
        let inner_rt = rt.clone();
        let done = rt.spawn(move || {
            let ready = Arc::new(Event::new());
            let (setter, waiter) = (ready.clone(), ready);
            let coroutine = inner_rt.spawn_async(async move { waiter.wait_async().await });
            let queued = inner_rt.spawn(move || {
                setter.set();
                std::thread::current().name().map(str::to_owned)
            });
            coroutine.join().unwrap();
            queued.join().unwrap().unwrap_or_default()
        });
        common::within_a_minute("a round of blocked waits ends", move || {
            done.join().unwrap()
        })
    };
    let first = round(&rt);
    let second = round(&rt);
    assert!(
        first.contains("-spare-"),
        "the first round ran on {first:?}"
    );
    assert_eq!(second, first, "the second round called the same spare back");
}
