//! Many graph runs at once, from several threads, on a small runtime: failures, retries,
//! cancellations mid-run and nested runs mixed. Every run must end with every node
//! accounted for, and the runtime must stay healthy.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plait::graph::{Graph, Node, NodeStatus};

/// A small deterministic generator, so that a failure can be replayed from its seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn random_graph(seed: &mut u64, nodes: usize, ran: &Arc<AtomicUsize>) -> (Graph, Vec<Node<u64>>) {
    let mut graph = Graph::new();
    let mut made: Vec<Node<u64>> = Vec::new();
    for i in 0..nodes {
        let inputs: Vec<Node<u64>> = (0..next(seed) % 3)
            .filter(|_| i > 0)
            .map(|_| made[(next(seed) % i as u64) as usize])
            .collect();
        let fails = next(seed) % 97 == 0;
        let ran = Arc::clone(ran);
        let node = match next(seed) % 3 {
            0 => graph.try_task_async(inputs, move |values| {
                let ran = Arc::clone(&ran);
                async move {
                    tokio::task::yield_now().await;
                    ran.fetch_add(1, Ordering::Relaxed);
                    if fails {
                        Err("planned")
                    } else {
                        Ok(values.iter().map(|v| **v).sum::<u64>() + 1)
                    }
                }
            }),
            _ => graph.try_task(inputs, move |values| {
                ran.fetch_add(1, Ordering::Relaxed);
                if fails {
                    Err("planned")
                } else {
                    Ok(values.into_iter().sum::<u64>() + 1)
                }
            }),
        };
        if next(seed) % 5 == 0 {
            let _ = graph.node(node).retries(1);
        }
        made.push(node);
    }
    (graph, made)
}

#[test]
fn concurrent_runs_with_failures_and_cancels_account_for_every_node() {
    let rt = common::runtime(2);
    let ran = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let (rt, ran) = (rt.clone(), Arc::clone(&ran));
            scope.spawn(move || {
                let mut seed = 0x9e37_79b9_7f4a_7c15 ^ (thread + 1);
                for round in 0..40 {
                    let n = 50 + (next(&mut seed) % 300) as usize;
                    let (graph, nodes) = random_graph(&mut seed, n, &ran);
                    let keep_going = round % 2 == 0;
                    let run = graph.runner(rt.clone()).keep_going(keep_going).start();
                    if next(&mut seed) % 4 == 0 {
                        run.cancel();
                    }
                    let results = run.join();
                    let total: usize = [
                        NodeStatus::Succeeded,
                        NodeStatus::Failed,
                        NodeStatus::Skipped,
                        NodeStatus::Cancelled,
                    ]
                    .into_iter()
                    .map(|status| results.count(status))
                    .sum();
                    assert_eq!(total, n, "thread {thread} round {round}");
                    for node in &nodes {
                        match results.status(node.id()) {
                            NodeStatus::Succeeded => assert!(results.attempts(node.id()) >= 1),
                            NodeStatus::Skipped => assert!(matches!(
                                results.error(node.id()),
                                Some(plait::Error::Upstream { .. })
                            )),
                            _ => {}
                        }
                    }
                    if results.count(NodeStatus::Skipped) > 0 {
                        assert!(results.count(NodeStatus::Failed) > 0);
                    }
                }
            });
        }
    });
    assert!(ran.load(Ordering::Relaxed) > 0);
    // Still healthy.
    let mut graph = Graph::new();
    let one = graph.task((), |()| 1);
    assert_eq!(rt.run_graph(graph).join().take(one).unwrap(), 1);
    assert!(rt.shutdown(std::time::Duration::from_secs(5)).is_clean());
}
