//! Scheduler invariants on random DAGs (property tests): every node runs at most once and
//! only after all its inputs; the inputs it receives are its inputs' results; nothing runs
//! downstream of a failure; keep-going runs exactly what does not need a failure; results
//! are released, all but the sinks'.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use plait::Runtime;
use plait::graph::{Graph, Node, NodeStatus};
use proptest::prelude::*;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| common::runtime(2))
}

/// One node of a generated graph.
#[derive(Clone, Debug)]
struct Spec {
    inputs: Vec<usize>,
    fails: bool,
    on_coroutine: bool,
}

fn dag() -> impl Strategy<Value = Vec<Spec>> {
    (1usize..48).prop_flat_map(|n| {
        let nodes: Vec<_> = (0..n)
            .map(|i| {
                let inputs = if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::vec(0..i, 0..4).boxed()
                };
                (inputs, proptest::bool::weighted(0.08), any::<bool>()).prop_map(
                    |(mut inputs, fails, on_coroutine)| {
                        inputs.sort_unstable();
                        inputs.dedup();
                        Spec {
                            inputs,
                            fails,
                            on_coroutine,
                        }
                    },
                )
            })
            .collect();
        nodes
    })
}

/// Counts live results.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What each node saw when it ran.
#[derive(Default)]
struct Log {
    /// (node, sequence number at start, sequence number at end, inputs received)
    runs: Vec<(usize, usize, usize, Vec<usize>)>,
}

struct Recorder {
    clock: AtomicUsize,
    log: Mutex<Log>,
    live: Arc<AtomicUsize>,
}

impl Recorder {
    fn run(
        &self,
        node: usize,
        inputs: Vec<usize>,
        fails: bool,
    ) -> Result<(usize, Tracked), String> {
        let start = self.clock.fetch_add(1, Ordering::SeqCst);
        let end = self.clock.fetch_add(1, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .runs
            .push((node, start, end, inputs));
        if fails {
            return Err(format!("node {node} fails"));
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok((node, Tracked(Arc::clone(&self.live))))
    }
}

type Out = (usize, Tracked);

fn build(specs: &[Spec], recorder: &Arc<Recorder>) -> (Graph, Vec<Node<Out>>) {
    let mut graph = Graph::new();
    let mut nodes: Vec<Node<Out>> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let inputs: Vec<Node<Out>> = spec.inputs.iter().map(|&j| nodes[j]).collect();
        let recorder = Arc::clone(recorder);
        let fails = spec.fails;
        let node = if spec.on_coroutine {
            graph.try_task_async(inputs, move |values| {
                let recorder = Arc::clone(&recorder);
                async move {
                    tokio::task::yield_now().await;
                    recorder.run(i, values.iter().map(|v| v.0).collect(), fails)
                }
            })
        } else {
            graph.try_task(inputs, move |values| {
                recorder.run(i, values.iter().map(|v| v.0).collect(), fails)
            })
        };
        nodes.push(node);
    }
    (graph, nodes)
}

/// The nodes downstream of any failing node (not the failing nodes themselves).
fn downstream_of_failures(specs: &[Spec]) -> Vec<bool> {
    let mut tainted = vec![false; specs.len()];
    for (i, spec) in specs.iter().enumerate() {
        tainted[i] = spec.inputs.iter().any(|&j| tainted[j] || specs[j].fails);
    }
    tainted
}

/// Whether a node upstream of `node` failed in this run.
fn failed_upstream(
    specs: &[Spec],
    results: &plait::graph::Results,
    nodes: &[Node<Out>],
    node: usize,
) -> bool {
    let mut stack = specs[node].inputs.clone();
    while let Some(input) = stack.pop() {
        if results.status(nodes[input].id()) == NodeStatus::Failed {
            return true;
        }
        stack.extend(&specs[input].inputs);
    }
    false
}

fn check(specs: Vec<Spec>, keep_going: bool) -> Result<(), TestCaseError> {
    let live = Arc::new(AtomicUsize::new(0));
    let recorder = Arc::new(Recorder {
        clock: AtomicUsize::new(0),
        log: Mutex::new(Log::default()),
        live: Arc::clone(&live),
    });
    let (graph, nodes) = build(&specs, &recorder);
    let results = graph
        .runner(runtime().clone())
        .keep_going(keep_going)
        .start()
        .join();
    let log = std::mem::take(&mut *recorder.log.lock().unwrap());

    let mut ran = vec![None; specs.len()];
    for (node, start, end, inputs) in log.runs {
        prop_assert!(ran[node].is_none(), "node {} ran twice", node);
        prop_assert_eq!(
            &inputs,
            &specs[node].inputs,
            "node {} got the wrong inputs",
            node
        );
        ran[node] = Some((start, end));
    }
    let tainted = downstream_of_failures(&specs);
    for (i, spec) in specs.iter().enumerate() {
        if let Some((start, _)) = ran[i] {
            for &j in &spec.inputs {
                let (_, input_end) = ran[j].expect("an input of a node that ran has run");
                prop_assert!(
                    input_end < start,
                    "node {} started before its input {} ended",
                    i,
                    j
                );
            }
            prop_assert!(!tainted[i], "node {} ran downstream of a failure", i);
        }
        let status = results.status(nodes[i].id());
        if keep_going {
            let expected = if tainted[i] {
                NodeStatus::Skipped
            } else if spec.fails {
                NodeStatus::Failed
            } else {
                NodeStatus::Succeeded
            };
            prop_assert_eq!(status, expected, "node {}", i);
            prop_assert_eq!(ran[i].is_some(), !tainted[i], "node {}", i);
        } else {
            match status {
                NodeStatus::Succeeded => prop_assert!(ran[i].is_some() && !spec.fails),
                NodeStatus::Failed => prop_assert!(ran[i].is_some() && spec.fails),
                NodeStatus::Cancelled => prop_assert!(specs.iter().any(|s| s.fails)),
                // Skipped only because something it needs failed, in this run.
                NodeStatus::Skipped => prop_assert!(
                    tainted[i] && failed_upstream(&specs, &results, &nodes, i),
                    "node {} skipped without a failure upstream",
                    i
                ),
                _ => prop_assert!(false, "an unknown status"),
            }
        }
    }
    if !specs.iter().any(|s| s.fails) {
        prop_assert!(results.is_success());
    }
    // Only the sinks' results outlive the run.
    let is_sink = |i: usize| specs.iter().all(|s| !s.inputs.contains(&i));
    let kept = (0..specs.len())
        .filter(|&i| is_sink(i) && results.status(nodes[i].id()) == NodeStatus::Succeeded)
        .count();
    prop_assert_eq!(live.load(Ordering::SeqCst), kept, "results released");
    drop(results);
    prop_assert_eq!(live.load(Ordering::SeqCst), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fail_fast_invariants_hold_on_random_dags(specs in dag()) {
        check(specs, false)?;
    }

    #[test]
    fn keep_going_invariants_hold_on_random_dags(specs in dag()) {
        check(specs, true)?;
    }
}
