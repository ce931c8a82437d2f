//! A panic becomes an error on its handle, whatever it throws: even a payload whose own
//! `Drop` panics (`std::panic::panic_any(BadDrop)`) is dropped where that second panic is
//! caught, on every strand and in every place plait catches panics. Nothing hangs, nothing
//! aborts, nothing reaches the caller.

mod common;

use common::within_a_minute;
use plait::Error;
use plait::graph::Graph;
use plait::process::ProcessOptions;

plait::test_worker!();

/// A panic payload whose `Drop` panics.
struct BadDrop;

impl Drop for BadDrop {
    fn drop(&mut self) {
        panic!("BadDrop's drop");
    }
}

fn throw() -> u32 {
    std::panic::panic_any(BadDrop)
}

#[track_caller]
fn assert_said(result: plait::Result<u32>) {
    match result {
        Err(Error::Panicked { message }) => assert!(
            message.contains("dropping its payload panicked too: BadDrop's drop"),
            "{message}"
        ),
        other => panic!("expected a panic on the handle, got {other:?}"),
    }
}

#[test]
fn a_thread_task() {
    let rt = common::runtime(2);
    assert_said(within_a_minute("the thread task's join", move || {
        rt.spawn(throw).join()
    }));
}

#[test]
fn a_scoped_task() {
    let rt = common::runtime(2);
    assert_said(within_a_minute("the scoped task's join", move || {
        rt.scope(|scope| scope.spawn(throw).join())
    }));
}

#[test]
fn a_coroutine() {
    let rt = common::runtime(2);
    assert_said(within_a_minute("the coroutine's join", move || {
        rt.spawn_async(async { throw() }).join()
    }));
}

#[test]
fn either_closure_of_a_join() {
    let rt = common::runtime(2);
    let (first, second) = within_a_minute("the joins", move || {
        (
            rt.join(throw, || 1).map(|(a, _)| a),
            rt.join(|| 1, throw).map(|(_, b)| b),
        )
    });
    assert_said(first);
    assert_said(second);
}

#[test]
fn a_task_group_on_both_strands() {
    let rt = common::runtime(2);
    let (threads, coroutines) = within_a_minute("the groups", move || {
        let mut group = rt.group();
        group.spawn(|| Ok::<_, std::io::Error>(throw()));
        let threads = group.join_all().map(|values| values[0]);
        let mut group = rt.group();
        group.spawn_async(async { Ok::<_, std::io::Error>(throw()) });
        (threads, group.join_all().map(|values| values[0]))
    });
    assert_said(threads);
    assert_said(coroutines);
}

#[test]
fn an_item_of_each_map() {
    let rt = common::runtime(2);
    let item = |x: u32| if x == 50 { throw() } else { x };
    let (ordered, unordered, coroutines) = within_a_minute("the maps", move || {
        let ordered: Vec<_> = rt.map(0..100u32, item).collect();
        let unordered: Vec<_> = rt.map_unordered(0..100u32, item).collect();
        let coroutines: Vec<_> = rt
            .map_async(0..100u32, 8, move |x| async move { item(x) })
            .into_iter()
            .collect();
        (ordered, unordered, coroutines)
    });
    let mut ordered = ordered;
    assert_said(ordered.remove(50));
    assert!(ordered.into_iter().all(|result| result.is_ok()));
    let mut failed = unordered
        .into_iter()
        .filter_map(|(i, result)| (i == 50).then_some(result));
    assert_said(failed.next().expect("item 50 came back"));
    let mut coroutines = coroutines;
    assert_said(coroutines.remove(50));
}

#[test]
fn a_graph_node_on_both_strands() {
    let rt = common::runtime(2);
    let (thread, coroutine) = within_a_minute("the graph", move || {
        let mut graph = Graph::new();
        let thread = graph.task((), |()| throw());
        let coroutine = graph.task_async((), |()| async { throw() });
        // Both run: the first failure must not cancel the other.
        let mut results = graph.runner(rt).keep_going(true).start().join();
        (results.take(thread), results.take(coroutine))
    });
    assert_said(thread);
    assert_said(coroutine);
}

#[plait::task]
fn throws_in_a_worker() -> u32 {
    throw()
}

#[test]
fn a_process_task_and_its_worker_lives_on() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    let pid = rt.process_workers_started();
    let result = rt.spawn_process(throws_in_a_worker::task(), ()).join();
    assert_said(result);
    assert_eq!(
        rt.process_workers_started(),
        pid.max(1),
        "the worker caught the panic and lives on"
    );
}

#[test]
fn a_coroutine_cancelled_while_it_blocks_and_then_throws() {
    let rt = common::runtime(2);
    let result = within_a_minute("the cancelled coroutine's join", move || {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let handle = rt.spawn_async(async move {
            started_tx.send(()).unwrap();
            // Blocks inside one poll: the cancel cannot drop it until it returns.
            let _ = gate.recv();
            throw()
        });
        started.recv().unwrap();
        assert!(handle.cancel());
        release.send(()).unwrap();
        handle.join()
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
}
