//! Task graphs: typed results flow between nodes on every strand; results are released
//! after their last consumer and kept where asked; priorities follow the critical path.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plait::graph::{Graph, NodeStatus};
use plait::process::{Command, ProcessOptions};
use plait::{Error, Strand};
use plait_testtasks::{add, worker_pid};

plait::test_worker!();

#[test]
fn results_flow_between_nodes_on_every_strand() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    let mut graph = Graph::new();
    let six = graph.task((), |()| 6i64);
    let seven = graph.task_async((), |()| async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        7i64
    });
    let product = graph.task((six, seven), |(a, b)| a * b);
    let in_worker = graph.process(product, add::task(), |p| (*p, 100));
    let pid = graph.process((), worker_pid::task(), |()| ());
    let echoed = graph.command(in_worker, |n| Command::shell(format!("echo {n}")));
    let line = graph.task_async(echoed, |output| async move {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    });

    let mut results = rt.run_graph(graph).join();
    assert!(results.is_success(), "{results:?}");
    assert_eq!(results.take(line).unwrap(), "142");
    assert_ne!(results.take(pid).unwrap(), std::process::id());
}

#[test]
fn a_fan_in_receives_its_inputs_in_order() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let parts: Vec<_> = (0..100u32).map(|i| graph.task((), move |()| i)).collect();
    let joined = graph.task(parts.clone(), |all| {
        all.into_iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    let joined_async = graph.task_async(parts, |all| async move {
        all.iter().map(|n| **n).collect::<Vec<u32>>()
    });
    let mut results = rt.run_graph(graph).join();
    let expected: Vec<String> = (0..100).map(|n: u32| n.to_string()).collect();
    assert_eq!(results.take(joined).unwrap(), expected.join(","));
    assert_eq!(
        results.take(joined_async).unwrap(),
        (0..100).collect::<Vec<_>>()
    );
}

/// Counts live instances, to see when the scheduler lets results go.
struct Tracked(Arc<AtomicUsize>);

impl Tracked {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked(Arc::clone(live))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn a_result_is_released_once_its_last_consumer_has_run() {
    let rt = common::runtime(2);
    let live = Arc::new(AtomicUsize::new(0));
    let mut graph = Graph::new();
    let counter = Arc::clone(&live);
    let first = graph.task((), move |()| Tracked::new(&counter));
    // The first's result must be alive while its consumers run, and gone for the third.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let observer = Arc::clone(&live);
    let second = graph.task(first, move |_| {
        log.lock().unwrap().push(observer.load(Ordering::SeqCst));
    });
    let log = Arc::clone(&seen);
    let observer = Arc::clone(&live);
    let third = graph.task(second, move |()| {
        log.lock().unwrap().push(observer.load(Ordering::SeqCst));
    });
    let kept = graph.task((), |()| 1u8);
    let _ = graph.node(kept).keep();
    let uses_kept = graph.task(kept, |n| *n + 1);

    let mut results = rt.run_graph(graph).join();
    assert_eq!(
        *seen.lock().unwrap(),
        [1, 0],
        "alive for its consumer, gone after"
    );
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert!(matches!(results.take(first), Err(Error::Released { .. })));
    assert_eq!(results.take(third).unwrap(), ());
    assert_eq!(results.take(kept).unwrap(), 1, "kept on request");
    assert_eq!(results.take(uses_kept).unwrap(), 2);
    let again = results.take(kept).unwrap_err();
    assert!(again.to_string().contains("taken already"), "{again}");
}

#[test]
fn the_longest_chain_runs_first() {
    let rt = common::runtime(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut graph = Graph::new();
    let step = |graph: &mut Graph, label: &'static str, after: Option<plait::graph::Node<()>>| {
        let order = Arc::clone(&order);
        let body = move || order.lock().unwrap().push(label);
        match after {
            None => graph.task((), move |()| body()),
            Some(after) => graph.task(after, move |_| body()),
        }
    };
    // Added first, but short: a lone node.
    step(&mut graph, "lone", None);
    let mut chain = step(&mut graph, "chain-0", None);
    for label in ["chain-1", "chain-2", "chain-3"] {
        chain = step(&mut graph, label, Some(chain));
    }
    let results = graph
        .runner(rt.clone())
        .limit(Strand::Thread, 1)
        .start()
        .join();
    assert!(results.is_success());
    assert_eq!(
        order.lock().unwrap()[0],
        "chain-0",
        "{:?}",
        order.lock().unwrap()
    );
}

#[test]
fn weights_bound_what_runs_at_once() {
    let rt = common::runtime(2);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // Each node waits for a partner: two of weight 2 fit a window of 4, so pairs meet; a
    // third at once would break the bound, which `most` would show.
    let pairs = Arc::new(tokio::sync::Barrier::new(2));
    let mut graph = Graph::new();
    for _ in 0..12 {
        let (running, most, pairs) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&pairs));
        let node = graph.task_async((), move |()| {
            let (running, most, pairs) =
                (Arc::clone(&running), Arc::clone(&most), Arc::clone(&pairs));
            async move {
                let now = running.fetch_add(2, Ordering::SeqCst) + 2;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::timeout(Duration::from_secs(10), pairs.wait())
                    .await
                    .expect("two nodes of weight 2 run at once");
                running.fetch_sub(2, Ordering::SeqCst);
            }
        });
        let _ = graph.node(node).weight(2);
    }
    let results = graph
        .runner(rt.clone())
        .limit(Strand::Coroutine, 4)
        .start()
        .join();
    assert!(results.is_success(), "{results:?}");
    assert_eq!(
        most.load(Ordering::SeqCst),
        4,
        "two nodes of weight 2 at a time"
    );
}

#[test]
fn closures_placed_on_the_coroutine_strand_wait_in_its_window_not_the_threads() {
    // One thread: its window holds 4 nodes. Sixteen blocking closures that can only
    // finish together must all be running at once.
    const NODES: usize = 16;
    let rt = common::runtime(1);
    let arrived = Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let mut graph = Graph::new();
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        let arrived = Arc::clone(&arrived);
        let node = graph.task((), move |()| {
            let (count, changed) = &*arrived;
            let mut count = count.lock().unwrap();
            *count += 1;
            changed.notify_all();
            // The time limit only turns a failure into a clear message.
            let (count, _) = changed
                .wait_timeout_while(count, Duration::from_secs(10), |n| *n < NODES)
                .unwrap();
            *count == NODES
        });
        let _ = graph.node(node).strand(Strand::Coroutine);
        nodes.push(node);
    }
    let starts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&starts);
    let results = graph
        .runner(rt.clone())
        .observe(move |event| {
            if matches!(event.kind, plait::graph::EventKind::Started) {
                seen.lock().unwrap().push(event.strand);
            }
        })
        .start()
        .join();
    assert!(results.is_success(), "{results:?}");
    assert!(
        nodes.iter().all(|node| *results.get(*node).unwrap()),
        "all {NODES} waited at once"
    );
    let starts = starts.lock().unwrap();
    assert_eq!(starts.len(), NODES);
    assert!(
        starts.iter().all(|strand| *strand == Strand::Coroutine),
        "their events name the strand they ran on: {starts:?}"
    );
}

#[test]
fn a_thread_node_can_run_and_join_another_graph() {
    for threads in [1, 2] {
        let rt = common::runtime(threads);
        let inner_rt = rt.clone();
        let mut outer = Graph::new();
        let seed = outer.task((), |()| 5u64);
        let nested = outer.task(seed, move |seed| {
            let mut inner = Graph::new();
            let mut last = inner.task((), |()| 0u64);
            for _ in 0..50 {
                last = inner.task(last, |n| n + 1);
            }
            let seed = *seed;
            let total = inner.task(last, move |n| n + seed);
            inner_rt.run_graph(inner).join().take(total).unwrap()
        });
        let after = outer.task(nested, |n| n * 2);
        let mut results = rt.run_graph(outer).join();
        assert_eq!(results.take(after).unwrap(), 110, "{threads} threads");
    }
}

/// Runs a one-node graph on `rt` and joins it: what user code may do anywhere.
fn nested_graph(rt: &plait::Runtime) -> i64 {
    let mut inner = Graph::new();
    let one = inner.task((), |()| 1i64);
    rt.run_graph(inner).join().take(one).unwrap()
}

#[test]
fn code_run_while_work_is_handed_over_can_run_and_join_another_graph() {
    // A process node's argument closure runs while the scheduler hands that node to its
    // executor; so does an observer told of its start. Each runs and joins a graph there.
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    let outer_rt = rt.clone();
    let (sum, told) = common::within_a_minute(
        "the graph finishes: nested graphs do not wait for the loop they interrupted",
        move || {
            let (in_args, in_observer) = (outer_rt.clone(), outer_rt.clone());
            let mut graph = Graph::new();
            let seed = graph.task((), |()| 40i64);
            let sum = graph.process(seed, add::task(), move |seed| {
                (*seed, nested_graph(&in_args))
            });
            let told = Arc::new(AtomicUsize::new(0));
            let count = Arc::clone(&told);
            let mut results = graph
                .runner(outer_rt.clone())
                .observe(move |event| {
                    if matches!(event.kind, plait::graph::EventKind::Started) {
                        count.fetch_add(nested_graph(&in_observer) as usize, Ordering::SeqCst);
                    }
                })
                .start()
                .join();
            (results.take(sum), told.load(Ordering::SeqCst))
        },
    );
    assert_eq!(sum.unwrap(), 41);
    assert_eq!(told, 2, "one nested graph per start");
}

#[test]
fn an_empty_graph_finishes_at_once() {
    let rt = common::runtime(1);
    let results = rt.run_graph(Graph::new()).join();
    assert!(results.is_empty());
    assert!(results.is_success());
}

#[test]
fn a_graph_can_be_awaited_and_joined_from_inside_tasks() {
    let rt = common::runtime(1);
    let inner = rt.clone();
    // Joined on the only pool thread: the wait must run the graph's nodes itself.
    let from_thread = rt.spawn(move || {
        let mut graph = Graph::new();
        let mut last = graph.task((), |()| 0u32);
        for _ in 0..100 {
            last = graph.task(last, |n| n + 1);
        }
        inner.run_graph(graph).join().take(last)
    });
    assert_eq!(from_thread.join().unwrap().unwrap(), 100);

    let inner = rt.clone();
    let from_coroutine = rt.spawn_async(async move {
        let mut graph = Graph::new();
        let a = graph.task((), |()| 2u32);
        let b = graph.task_async(a, |a| async move { *a * 21 });
        inner.run_graph(graph).await.take(b)
    });
    assert_eq!(from_coroutine.join().unwrap().unwrap(), 42);
}

#[test]
fn statuses_and_attempts_are_reported_per_node() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let ok = graph.task((), |()| ());
    let results = rt.run_graph(graph).join();
    assert_eq!(results.status(ok.id()), NodeStatus::Succeeded);
    assert_eq!(results.attempts(ok.id()), 1);
    assert!(results.error(ok.id()).is_none());
    assert!(results.check().is_ok());
}

#[test]
#[should_panic(expected = "same graph")]
fn a_node_of_another_graph_is_refused() {
    let mut one = Graph::new();
    let mut other = Graph::new();
    let foreign = one.task((), |()| 1u8);
    let _ = other.task(foreign, |n| *n);
}
