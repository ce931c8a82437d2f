//! Many graph runs at once, from several threads, on a small runtime: failures, retries,
//! nested runs, and cancellations at random points of a run mixed. Every run must end with
//! every node's status consistent with what ran, and the runtime must stay healthy.

mod common;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use plait::graph::{EventKind, Graph, GraphCanceller, Node, NodeStatus};
use plait::{Error, Runtime};

/// A small deterministic generator, so that a failure can be replayed from its seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

struct Spec {
    inputs: Vec<usize>,
    fails: bool,
}

/// A random graph; `runs[i]` counts the runs of node `i`.
fn random_graph(
    seed: &mut u64,
    nodes: usize,
    runs: &Arc<Vec<AtomicU32>>,
    rt: &Runtime,
) -> (Graph, Vec<Node<u64>>, Vec<Spec>) {
    let mut graph = Graph::new();
    let mut made: Vec<Node<u64>> = Vec::new();
    let mut specs = Vec::new();
    for i in 0..nodes {
        let mut inputs: Vec<usize> = (0..next(seed) % 3)
            .filter(|_| i > 0)
            .map(|_| (next(seed) % i as u64) as usize)
            .collect();
        inputs.sort_unstable();
        inputs.dedup();
        let fails = next(seed).is_multiple_of(97);
        let deps: Vec<Node<u64>> = inputs.iter().map(|&j| made[j]).collect();
        let runs = Arc::clone(runs);
        let node = match next(seed) % 4 {
            0 => graph.try_task_async(deps, move |values| {
                let runs = Arc::clone(&runs);
                async move {
                    tokio::task::yield_now().await;
                    runs[i].fetch_add(1, Ordering::SeqCst);
                    if fails {
                        Err("planned")
                    } else {
                        Ok(values.iter().map(|v| **v).sum::<u64>() + 1)
                    }
                }
            }),
            1 => {
                // A node that runs a small graph of its own and joins it.
                let rt = rt.clone();
                graph.try_task(deps, move |values| {
                    runs[i].fetch_add(1, Ordering::SeqCst);
                    let mut inner = Graph::new();
                    let base: u64 = values.into_iter().sum();
                    let a = inner.task((), move |()| base);
                    let b = inner.task(a, |a| a + 1);
                    let got = rt.run_graph(inner).join().take(b);
                    if fails {
                        Err("planned".into())
                    } else {
                        got.map_err(|e| e.to_string())
                    }
                })
            }
            _ => graph.try_task(deps, move |values| {
                runs[i].fetch_add(1, Ordering::SeqCst);
                if fails {
                    Err("planned")
                } else {
                    Ok(values.into_iter().sum::<u64>() + 1)
                }
            }),
        };
        if next(seed).is_multiple_of(5) {
            let _ = graph.node(node).retries(1);
        }
        made.push(node);
        specs.push(Spec { inputs, fails });
    }
    (graph, made, specs)
}

#[test]
fn concurrent_runs_with_failures_and_cancels_account_for_every_node() {
    let rt = common::runtime(2);
    let total_runs = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let (rt, total_runs) = (rt.clone(), Arc::clone(&total_runs));
            scope.spawn(move || {
                let mut seed = 0x9e37_79b9_7f4a_7c15 ^ (thread + 1);
                for round in 0..30 {
                    let n = 50 + (next(&mut seed) % 250) as usize;
                    let runs: Arc<Vec<AtomicU32>> =
                        Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
                    let (graph, nodes, specs) = random_graph(&mut seed, n, &runs, &rt);
                    let keep_going = round % 2 == 0;
                    // Some runs are cancelled part-way: after a random number of nodes.
                    let cancel_after = next(&mut seed)
                        .is_multiple_of(3)
                        .then(|| next(&mut seed) % n as u64);
                    let canceller: Arc<Mutex<Option<GraphCanceller>>> = Arc::default();
                    let finished = Arc::new(AtomicUsize::new(0));
                    let (slot, count) = (Arc::clone(&canceller), Arc::clone(&finished));
                    let run = graph
                        .runner(rt.clone())
                        .keep_going(keep_going)
                        .observe(move |event| {
                            if let EventKind::Finished { .. } = event.kind {
                                let done = count.fetch_add(1, Ordering::SeqCst) as u64;
                                if cancel_after == Some(done)
                                    && let Some(c) = slot.lock().unwrap().as_ref()
                                {
                                    c.cancel();
                                }
                            }
                        })
                        .start();
                    *canceller.lock().unwrap() = Some(run.canceller());
                    let results = run.join();
                    let at = format!("thread {thread} round {round}");
                    for (i, spec) in specs.iter().enumerate() {
                        let id = nodes[i].id();
                        let ran = runs[i].load(Ordering::SeqCst);
                        total_runs.fetch_add(ran as usize, Ordering::Relaxed);
                        if ran > 0 {
                            for &j in &spec.inputs {
                                assert_eq!(
                                    results.status(nodes[j].id()),
                                    NodeStatus::Succeeded,
                                    "{at}: node {i} ran before input {j} succeeded"
                                );
                            }
                        }
                        assert!(
                            ran <= results.attempts(id),
                            "{at}: node {i} ran more than it was started"
                        );
                        match results.status(id) {
                            NodeStatus::Succeeded => {
                                assert!(!spec.fails && ran == 1, "{at}: node {i}");
                            }
                            NodeStatus::Failed => {
                                assert!(spec.fails && ran >= 1, "{at}: node {i}");
                            }
                            NodeStatus::Skipped => {
                                assert_eq!(ran, 0, "{at}: node {i}");
                                assert!(matches!(results.error(id), Some(Error::Upstream { .. })));
                            }
                            NodeStatus::Cancelled => {
                                assert!(
                                    cancel_after.is_some() || results.count(NodeStatus::Failed) > 0,
                                    "{at}: node {i} cancelled for no reason"
                                );
                            }
                            _ => panic!("{at}: an unknown status"),
                        }
                    }
                    if cancel_after.is_none() && !specs.iter().any(|s| s.fails) {
                        assert!(results.is_success(), "{at}");
                    }
                }
            });
        }
    });
    assert!(total_runs.load(Ordering::Relaxed) > 0);
    // Still healthy.
    let mut graph = Graph::new();
    let one = graph.task((), |()| 1);
    assert_eq!(rt.run_graph(graph).join().take(one).unwrap(), 1);
    assert!(rt.shutdown(std::time::Duration::from_secs(5)).is_clean());
}
