//! Task graphs: the scheduler's cost per node on graphs of no-op tasks (a chain, a fan-out
//! then fan-in, a random DAG) of 100,000 and 1,000,000 nodes, and the heap each node
//! takes at the run's peak. The peer is Dask's sync and threaded schedulers on the same
//! graphs (`peers/dask_graphs.py` in this crate), with `--peers`. Memory is measured in a
//! fresh process per case, as the peer's: peak resident memory grown, and the peak of live
//! heap bytes counted by the allocator.

use std::time::{Duration, Instant};

use plait::graph::{Graph, Node};

use crate::alloc;
use crate::context::{self, Context};
use crate::report::Row;

/// The shapes measured; the Python peer builds the same ones.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// Each node needs the one before it.
    Chain,
    /// One root, every middle node needs it, one sink needs them all.
    FanOutIn,
    /// Each node needs up to three nodes among the thousand before it, chosen at random.
    Random,
}

impl Shape {
    pub(crate) const ALL: [Shape; 3] = [Shape::Chain, Shape::FanOutIn, Shape::Random];

    /// The shape's name on the memory child's command line.
    fn child_name(self) -> &'static str {
        match self {
            Shape::Chain => "graph-chain",
            Shape::FanOutIn => "graph-fan",
            Shape::Random => "graph-random",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::FanOutIn => "fan-out/fan-in",
            Shape::Random => "random DAG",
        }
    }
}

/// The inputs of node `i` in a random DAG: up to three of the thousand nodes before it,
/// from a fixed xorshift sequence so that every run (and the Python peer) builds the same
/// graph.
pub(crate) fn random_inputs(i: usize, rng: &mut u64) -> Vec<usize> {
    let mut inputs = Vec::with_capacity(3);
    if i == 0 {
        return inputs;
    }
    let window = i.min(1000) as u64;
    for _ in 0..3.min(i) {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let input = i - 1 - (*rng % window) as usize;
        if !inputs.contains(&input) {
            inputs.push(input);
        }
    }
    inputs
}

fn build(shape: Shape, n: usize) -> Graph {
    let mut graph = Graph::with_capacity(n);
    match shape {
        Shape::Chain => {
            let mut last = graph.task((), |()| ());
            for _ in 1..n {
                last = graph.task(last, |_| ());
            }
        }
        Shape::FanOutIn => {
            let root = graph.task((), |()| ());
            let middle: Vec<Node<()>> = (0..n - 2).map(|_| graph.task(root, |_| ())).collect();
            let _sink = graph.task(middle, |_| ());
        }
        Shape::Random => {
            let mut rng = 0x2545_f491_4f6c_dd1d_u64;
            let mut nodes: Vec<Node<()>> = Vec::with_capacity(n);
            for i in 0..n {
                let inputs: Vec<Node<()>> = random_inputs(i, &mut rng)
                    .into_iter()
                    .map(|input| nodes[input])
                    .collect();
                nodes.push(graph.task(inputs, |_| ()));
            }
        }
    }
    graph
}

/// Builds and runs one graph; returns (build, run) times.
fn build_and_run(ctx: &Context, shape: Shape, n: usize) -> (Duration, Duration) {
    let started = Instant::now();
    let graph = build(shape, n);
    let built = started.elapsed();
    let started = Instant::now();
    let results = ctx.plait.run_graph(graph).join();
    let ran = started.elapsed();
    assert!(results.is_success(), "no-op nodes succeed");
    drop(results);
    (built, ran)
}

/// Measures the memory of one build and run in a fresh copy of this program: (peak heap
/// bytes, peak resident bytes grown).
fn child(shape: Shape, n: u64) -> Option<(f64, f64)> {
    match context::memory_child(shape.child_name(), n)?.as_slice() {
        &[heap, rss] => Some((heap, rss)),
        _ => None,
    }
}

/// The child's side: builds and runs one graph, prints "peak-heap-bytes peak-rss-growth".
pub(crate) fn child_main(system: &str, n: u64) -> Result<(), String> {
    let shape = Shape::ALL
        .into_iter()
        .find(|shape| shape.child_name() == system)
        .ok_or_else(|| format!("no graph shape {system:?}"))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = plait::Runtime::builder()
        .threads(threads)
        .coroutine_workers(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let before = alloc::rss_bytes().unwrap_or(0);
    alloc::start();
    let graph = build(shape, n as usize);
    let results = rt.run_graph(graph).join();
    let heap = alloc::peak();
    alloc::stop();
    let rss = alloc::peak_rss_bytes().unwrap_or(0).saturating_sub(before);
    if !results.is_success() {
        return Err("a no-op node failed".to_owned());
    }
    println!("{heap} {rss}");
    // Exit without tearing down: nothing more to measure.
    std::process::exit(0);
}

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let mut rows = Vec::new();
    for n in [ctx.n(100_000), ctx.n(1_000_000)] {
        for shape in Shape::ALL {
            let mut builds = Vec::new();
            let runs = ctx.measure(|| {
                let (built, ran) = build_and_run(ctx, shape, n as usize);
                builds.push(built);
                ran
            });
            let totals: Vec<Duration> = builds[1..]
                .iter()
                .zip(&runs)
                .map(|(built, ran)| *built + *ran)
                .collect();
            let case = format!("{} of {n} no-op nodes", shape.name());
            rows.push(Row::timed("graph", &case, "plait run_graph: run", n, &runs));
            rows.push(Row::timed(
                "graph",
                &case,
                "plait run_graph: build + run",
                n,
                &totals,
            ));
            match child(shape, n) {
                Some((heap, rss)) => {
                    let mut row = Row::timed("graph", &case, "plait: memory", n, &totals);
                    row.bytes_per_task = Some(rss / n as f64);
                    row.heap_bytes_per_task = Some(heap / n as f64);
                    rows.push(row.note(format!(
                        "peak RSS +{:.0} MiB, peak heap {:.0} MiB (fresh process): {:.0} B / {:.0} B per node",
                        rss / 1048576.0,
                        heap / 1048576.0,
                        rss / n as f64,
                        heap / n as f64
                    )));
                }
                None => eprintln!("plait-bench: the graph memory child failed for {case}"),
            }
        }
    }
    rows
}
