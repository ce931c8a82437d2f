//! The claims plait makes, checked against the rows of one run.

use crate::report::{Comparison, Row, format_ns};
use crate::suites::{coroutine, waits};

/// The row of `suite` whose system starts with `system` and whose case is `case` (or, with
/// none exactly so, starts with it).
fn find<'a>(rows: &'a [Row], suite: &str, system: &str, case: Option<&str>) -> Option<&'a Row> {
    let of = |r: &&Row| r.suite == suite && r.system.starts_with(system);
    case.and_then(|c| rows.iter().filter(of).find(|r| r.case == c))
        .or_else(|| {
            rows.iter()
                .filter(of)
                .find(|r| case.is_none_or(|c| r.case.starts_with(c)))
        })
}

fn speedup(row: &Row) -> Option<f64> {
    row.note
        .as_deref()?
        .strip_prefix("speedup ")?
        .trim_end_matches('x')
        .parse()
        .ok()
}

/// Which way a claim points.
#[derive(Clone, Copy)]
enum Direction {
    /// plait costs at most `limit` times the peer (ratio = ours / peer).
    AtMost,
    /// plait is at least `limit` times better than the peer (ratio = peer / ours).
    AtLeast,
}

/// Which row: suite, the start of the system's name, and the start of the case's.
type Pick = (&'static str, &'static str, Option<&'static str>);

/// One claim: which rows, reduced to which number, in which unit, against which bound.
struct Claim {
    suite: &'static str,
    text: &'static str,
    ours: Pick,
    peer: Pick,
    value: Measure,
    direction: Direction,
    limit: f64,
    unit: fn(f64) -> String,
}

/// ours / peer. Cases of one suite ran in turn (A B A B ...), so the median of the
/// run-by-run ratios cancels drift in the machine's speed; otherwise (a peer in another
/// process, or a figure that is not a time) the ratio of the two figures.
fn ratio(ours: (&Row, f64), peer: (&Row, f64), timed: bool) -> f64 {
    let (o, p) = (ours.0, peer.0);
    if timed
        && o.suite == p.suite
        && o.runs_wall_s.len() == p.runs_wall_s.len()
        && !o.runs_wall_s.is_empty()
    {
        let pairs: Vec<f64> = o
            .runs_wall_s
            .iter()
            .zip(&p.runs_wall_s)
            .map(|(a, b)| a / b)
            .collect();
        return crate::report::median(&pairs);
    }
    ours.1 / peer.1
}

impl Claim {
    fn check(&self, ours: (&Row, f64), peer: (&Row, f64)) -> Comparison {
        let timed = self.value != Measure::Heap;
        let forward = ratio(ours, peer, timed);
        let (ratio, target, met) = match self.direction {
            Direction::AtMost => (
                forward,
                format!("<= {}x", self.limit),
                forward <= self.limit,
            ),
            Direction::AtLeast => {
                let r = 1.0 / forward;
                (r, format!(">= {}x", self.limit), r >= self.limit)
            }
        };
        Comparison {
            suite: self.suite,
            claim: self.text.to_owned(),
            ours: format!("{} ({})", (self.unit)(ours.1), ours.0.system),
            peer: format!("{} ({})", (self.unit)(peer.1), peer.0.system),
            ratio,
            target,
            met,
        }
    }
}

fn bytes(b: f64) -> String {
    format!("{b:.0} B")
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1e3)
}

/// Which figure of a row a claim compares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Nanoseconds per task.
    PerTask,
    /// Median wall time.
    Wall,
    /// Heap bytes per task.
    Heap,
}

impl Measure {
    fn of(self, row: &Row) -> Option<f64> {
        match self {
            Measure::PerTask => Some(row.ns_per_task),
            Measure::Wall => Some(row.wall_s),
            Measure::Heap => row.bytes_per_task,
        }
    }
}

pub(crate) fn all(rows: &[Row]) -> Vec<Comparison> {
    use Direction::{AtLeast, AtMost};
    use Measure::{Heap, PerTask, Wall};
    let claim = |suite, text, ours, peer, value, direction, limit, unit| Claim {
        suite,
        text,
        ours,
        peer,
        value,
        direction,
        limit,
        unit,
    };
    let mut claims = vec![
        claim(
            "spawn",
            "thread spawn+join per task vs rayon spawn",
            ("spawn", "plait", None),
            ("spawn", "rayon ThreadPool::spawn + per-task slot", None),
            PerTask,
            AtMost,
            1.3,
            format_ns,
        ),
        claim(
            "scope",
            "scoped spawn per task vs rayon scope+spawn (both spawning from a pool thread)",
            ("scope", "plait scope + spawn on a pool thread", None),
            ("scope", "rayon", None),
            PerTask,
            AtMost,
            1.3,
            format_ns,
        ),
    ];
    // The coroutine strand against raw tokio, in both shapes its suites measure.
    for (coroutine_case, waits_case, spawn_text, waits_text) in [
        (
            coroutine::FROM_OUTSIDE,
            waits::FROM_OUTSIDE,
            "spawn_async+await per task vs tokio (from block_on)",
            "10,000 concurrent 10 ms waits, wall vs tokio (from block_on)",
        ),
        (
            coroutine::FROM_INSIDE,
            waits::FROM_INSIDE,
            "spawn_async+await per task vs tokio (from a task on the strand)",
            "10,000 concurrent 10 ms waits, wall vs tokio (from a task on the strand)",
        ),
    ] {
        claims.push(claim(
            "coroutine",
            spawn_text,
            ("coroutine", "plait", Some(coroutine_case)),
            ("coroutine", "tokio", Some(coroutine_case)),
            PerTask,
            AtMost,
            1.3,
            format_ns,
        ));
        claims.push(claim(
            "waits",
            waits_text,
            ("waits", "plait", Some(waits_case)),
            ("waits", "tokio", Some(waits_case)),
            Wall,
            AtMost,
            1.2,
            ms,
        ));
    }
    claims.extend([
        claim(
            "memory",
            "memory per idle coroutine vs tokio (resident, fresh process)",
            ("memory", "plait", None),
            ("memory", "tokio", None),
            Heap,
            AtMost,
            1.2,
            bytes,
        ),
        claim(
            "spawn",
            "thread spawn+join vs ThreadPoolExecutor submit+result",
            ("spawn", "plait", None),
            ("python:tiny_tasks", "ThreadPoolExecutor", Some("submit")),
            PerTask,
            AtLeast,
            50.0,
            format_ns,
        ),
        claim(
            "map",
            "map over tiny items vs ThreadPoolExecutor.map",
            ("map", "plait", None),
            ("python:tiny_tasks", "ThreadPoolExecutor", Some("map")),
            PerTask,
            AtLeast,
            1000.0,
            format_ns,
        ),
        // Against Python, the shape of its peer: tasks created from inside the loop.
        claim(
            "coroutine",
            "spawn_async+await vs asyncio+uvloop create_task+gather",
            ("coroutine", "plait", Some(coroutine::FROM_INSIDE)),
            ("python:tiny_tasks", "asyncio (uvloop)", Some("create_task")),
            PerTask,
            AtLeast,
            15.0,
            format_ns,
        ),
        claim(
            "coroutine",
            "reference: raw tokio::spawn+await vs asyncio+uvloop",
            ("coroutine", "tokio", Some(coroutine::FROM_INSIDE)),
            ("python:tiny_tasks", "asyncio (uvloop)", Some("create_task")),
            PerTask,
            AtLeast,
            15.0,
            format_ns,
        ),
        claim(
            "waits",
            "10,000 concurrent 10 ms waits vs asyncio+uvloop",
            ("waits", "plait", Some(waits::FROM_INSIDE)),
            ("python:io_bound", "asyncio (uvloop)", None),
            Wall,
            AtLeast,
            4.0,
            ms,
        ),
        claim(
            "waits",
            "reference: raw tokio's 10,000 waits vs asyncio+uvloop",
            ("waits", "tokio", Some(waits::FROM_INSIDE)),
            ("python:io_bound", "asyncio (uvloop)", None),
            Wall,
            AtLeast,
            4.0,
            ms,
        ),
        claim(
            "memory",
            "memory per idle coroutine vs asyncio (a third or less)",
            ("memory", "plait", None),
            ("python:tiny_tasks", "asyncio (memory)", None),
            Heap,
            AtLeast,
            3.0,
            bytes,
        ),
        claim(
            "queue",
            "durable queue, no-op tasks end to end vs Celery on Redis (prefork, concurrency 2)",
            ("queue", "plait queue, SQLite (default", Some("delay no-op")),
            ("python:celery_queue", "celery prefork", None),
            PerTask,
            AtLeast,
            10.0,
            format_ns,
        ),
        claim(
            "queue",
            "enqueue to start in a worker process, p50, vs Celery on Redis (prefork)",
            (
                "queue",
                "plait queue, SQLite (default",
                Some("enqueue to start, one task at a time (p50)"),
            ),
            ("python:celery_latency", "celery prefork", None),
            PerTask,
            AtLeast,
            1.0,
            format_ns,
        ),
        claim(
            "queue-redis",
            "queue on Redis, no-op tasks one by one end to end vs Celery on Redis (2 worker processes each)",
            (
                "queue-redis",
                "plait queue, Redis, 2 worker",
                Some("delay no-op, then get all results"),
            ),
            ("python:celery_queue", "celery prefork", None),
            PerTask,
            AtLeast,
            20.0,
            format_ns,
        ),
        claim(
            "queue-redis",
            "queue on Redis, submit all then gather vs Ray's remote tasks (2 processes each)",
            (
                "queue-redis",
                "plait queue, Redis, 2 worker",
                Some("submit all, then gather all results"),
            ),
            ("python:ray_tasks", "ray", Some("no-op remote tasks")),
            PerTask,
            AtLeast,
            10.0,
            format_ns,
        ),
        claim(
            "queue-redis",
            "queue on Redis, submit all then gather vs dask.distributed client.map (2 processes, worker-saturation=inf)",
            (
                "queue-redis",
                "plait queue, Redis, 2 worker",
                Some("submit all, then gather all results"),
            ),
            (
                "python:dask_map",
                "dask.distributed LocalCluster(2 procs x 1 thread), worker-saturation=inf",
                None,
            ),
            PerTask,
            AtLeast,
            1.0,
            format_ns,
        ),
        claim(
            "queue",
            "healthy throughput beside a poison task (1 in 5,000 kills its worker) vs without",
            (
                "queue",
                "plait queue, SQLite (default",
                Some("delay no-op, then get all results, with poison"),
            ),
            (
                "queue",
                "plait queue, SQLite (default",
                Some("delay no-op, then get all results"),
            ),
            PerTask,
            AtMost,
            1.1,
            format_ns,
        ),
        claim(
            "process",
            "tiny tasks one by one through worker processes vs ProcessPoolExecutor chunksize=1",
            ("process", "plait", Some("spawn_process")),
            (
                "python:tiny_tasks",
                "ProcessPoolExecutor",
                Some("map no-op chunksize=1"),
            ),
            PerTask,
            AtLeast,
            50.0,
            format_ns,
        ),
        claim(
            "process",
            "batched map through worker processes vs multiprocessing.Pool.map (default chunks)",
            ("process", "plait", Some("map over tiny items")),
            (
                "python:tiny_tasks",
                "multiprocessing.Pool",
                Some("map no-op default chunksize"),
            ),
            PerTask,
            AtLeast,
            5.0,
            format_ns,
        ),
    ]);
    let mut out = Vec::new();
    for claim in &claims {
        let ours = find(rows, claim.ours.0, claim.ours.1, claim.ours.2);
        let peer = find(rows, claim.peer.0, claim.peer.1, claim.peer.2);
        if let (Some(o), Some(p)) = (ours, peer)
            && let (Some(ov), Some(pv)) = (claim.value.of(o), claim.value.of(p))
        {
            out.push(claim.check((o, ov), (p, pv)));
        }
    }
    for (case, claim) in [
        ("start workers", "worker processes started and serving"),
        (
            "a worker crashes",
            "a worker crash until its replacement has served",
        ),
    ] {
        if let Some(o) = find(rows, "process", "plait", Some(case)) {
            let limit = 5e-3;
            out.push(Comparison {
                suite: "process",
                claim: claim.to_owned(),
                ours: format!("{} ({})", ms(o.wall_s), o.system),
                peer: "-".to_owned(),
                ratio: o.wall_s / limit,
                target: "< 5 ms".to_owned(),
                met: o.wall_s < limit,
            });
        }
    }
    graph(rows, &mut out);
    if let Some(o) = find(rows, "cpu", "plait spawn", None)
        && let Some(s) = speedup(o)
    {
        let peer = find(rows, "python:cpu_bound", "ThreadPoolExecutor", None).and_then(speedup);
        out.push(Comparison {
            suite: "cpu",
            claim: "CPU-bound speedup over one thread, all cores".to_owned(),
            ours: format!("{s:.2}x ({})", o.system),
            peer: peer.map_or_else(
                || "-".to_owned(),
                |p| format!("{p:.2}x (Python ThreadPoolExecutor)"),
            ),
            ratio: s,
            target: ">= 1.8x speedup".to_owned(),
            met: s >= 1.8,
        });
    }
    out
}

/// The graph suite's claims, per graph: cost per node (at most 2 µs, at least 20 times
/// less than Dask's schedulers on the same graph) and, for a million nodes, built and run
/// in under 5 s and under 1 GiB.
fn graph(rows: &[Row], out: &mut Vec<Comparison>) {
    for ours in rows
        .iter()
        .filter(|r| r.suite == "graph" && r.system == "plait run_graph: run")
    {
        let case = ours.case.as_str();
        out.push(Comparison {
            suite: "graph",
            claim: format!("scheduler cost per node, {case}"),
            ours: format_ns(ours.ns_per_task),
            peer: "-".to_owned(),
            ratio: ours.ns_per_task / 2000.0,
            target: "<= 2 µs".to_owned(),
            met: ours.ns_per_task <= 2000.0,
        });
        for system in ["dask sync", "dask threads"] {
            if let Some(peer) = find(rows, "python:dask_graphs", system, Some(case))
                && peer.case == case
            {
                let ratio = peer.ns_per_task / ours.ns_per_task;
                out.push(Comparison {
                    suite: "graph",
                    claim: format!("cost per node vs {system}, {case}"),
                    ours: format_ns(ours.ns_per_task),
                    peer: format!("{} ({})", format_ns(peer.ns_per_task), peer.system),
                    ratio,
                    target: ">= 20x".to_owned(),
                    met: ratio >= 20.0,
                });
            }
        }
        if ours.n < 1_000_000 {
            continue;
        }
        if let Some(total) = find(rows, "graph", "plait run_graph: build + run", Some(case)) {
            out.push(Comparison {
                suite: "graph",
                claim: format!("built and run, {case}"),
                ours: ms(total.wall_s),
                peer: "-".to_owned(),
                ratio: total.wall_s / 5.0,
                target: "< 5 s".to_owned(),
                met: total.wall_s < 5.0,
            });
        }
        if let Some(memory) = find(rows, "graph", "plait: memory", Some(case))
            && let Some(per_node) = memory.bytes_per_task
        {
            let total = per_node * memory.n as f64;
            let gib = f64::from(1u32 << 30);
            out.push(Comparison {
                suite: "graph",
                claim: format!("peak resident memory grown, {case}"),
                ours: format!("{:.0} MiB ({per_node:.0} B per node)", total / 1048576.0),
                peer: find(rows, "python:dask_graphs", "dask sync", Some(case))
                    .and_then(|p| p.bytes_per_task)
                    .map_or_else(
                        || "-".to_owned(),
                        |b| format!("{b:.0} B per node (dask sync)"),
                    ),
                ratio: total / gib,
                target: "< 1 GiB".to_owned(),
                met: total < gib,
            });
        }
    }
}
