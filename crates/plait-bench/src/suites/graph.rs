//! Task graphs: the scheduler's cost per node on graphs of no-op tasks (a chain, a fan-out
//! then fan-in, a random DAG) of 100,000 and 1,000,000 nodes, and the heap each node
//! takes at the run's peak. The peer is Dask's sync and threaded schedulers on the same
//! graphs (`peers/dask_graphs.py` in this crate), with `--peers`.

use std::time::{Duration, Instant};

use plait::graph::{Graph, Node};

use crate::alloc;
use crate::context::Context;
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
            alloc::start();
            build_and_run(ctx, shape, n as usize);
            let peak = alloc::peak();
            alloc::stop();
            let mut row = Row::timed("graph", &case, "plait: peak heap", n, &totals);
            row.heap_bytes_per_task = Some(peak as f64 / n as f64);
            rows.push(row.note(format!("peak heap {:.1} MiB", peak as f64 / 1048576.0)));
        }
    }
    rows
}
