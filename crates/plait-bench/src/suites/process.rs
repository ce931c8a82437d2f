//! Process strand: tiny tasks through worker processes, one by one (pipelined) and batched
//! by `map_process`; how long workers take to start, and to be replaced after a crash. The
//! peers are Python's `ProcessPoolExecutor` and `multiprocessing.Pool`
//! (`../shared/bench/peers/tiny_tasks.py`), with the same two workers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use plait::Runtime;
use plait::process::ProcessOptions;

use crate::context::{Context, time};
use crate::report::Row;

/// The tiny task: what the Python peers run (`x + 1`).
#[plait::task]
fn inc(x: u64) -> u64 {
    x + 1
}

/// A worker crash, for the time to replace it.
#[plait::task]
fn crash() -> u64 {
    std::process::abort()
}

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let rt = &ctx.plait;
    let workers = rt.process_workers();
    rt.start_processes()
        .expect("the benchmark binary calls plait::init, so its workers start");
    let n = ctx.n(100_000);
    let one_by_one = ctx.measure(|| spawn_and_join(rt, n));
    let mapped_n = ctx.n(1_000_000);
    let mapped = ctx.measure(|| map(rt, mapped_n));
    let round_trips = ctx.n(5_000);
    let sequential = ctx.measure(|| round_trip(rt, round_trips));
    let starts = ctx.measure(|| start(workers));
    let crashes = ctx.measure(recover);
    let pool = format!("plait, {workers} worker processes");
    vec![
        Row::timed(
            "process",
            "spawn_process + join, tiny tasks (all submitted, then joined)",
            &format!("{pool}: spawn_process"),
            n,
            &one_by_one,
        ),
        Row::timed(
            "process",
            "map over tiny items (automatic chunks)",
            &format!("{pool}: map_process"),
            mapped_n,
            &mapped,
        ),
        Row::timed(
            "process",
            "one round trip at a time (spawn_process, join, repeat)",
            &format!("{pool}: sequential round trip"),
            round_trips,
            &sequential,
        ),
        Row::timed(
            "process",
            "start workers until all serve",
            &format!("plait start_processes ({workers} workers)"),
            1,
            &starts,
        ),
        Row::timed(
            "process",
            "a worker crashes (abort) until its replacement has served a task",
            "plait, 1 worker: crash to replacement serving",
            1,
            &crashes,
        ),
    ]
}

fn check(sum: u64, n: u64) {
    // inc(i) summed over 0..n.
    assert_eq!(sum, n * (n + 1) / 2, "wrong results");
}

fn spawn_and_join(rt: &Runtime, n: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| rt.spawn_process(inc::task(), i)).collect();
    let sum: u64 = handles.into_iter().map(|h| h.join().expect("inc")).sum();
    let elapsed = start.elapsed();
    check(sum, n);
    elapsed
}

fn map(rt: &Runtime, n: u64) -> Duration {
    let mut sum = 0;
    let elapsed = time(|| {
        sum = rt
            .map_process(inc::task(), 0..n)
            .map(|r| r.expect("inc"))
            .sum();
    });
    check(sum, n);
    elapsed
}

fn round_trip(rt: &Runtime, n: u64) -> Duration {
    let mut sum = 0;
    let elapsed = time(|| {
        for i in 0..n {
            sum += rt.spawn_process(inc::task(), i).join().expect("inc");
        }
    });
    check(sum, n);
    elapsed
}

fn start(workers: usize) -> Duration {
    let rt = Runtime::builder()
        .threads(1)
        .coroutine_workers(1)
        .processes(ProcessOptions::new().workers(workers))
        .build()
        .expect("a runtime");
    let elapsed = time(|| rt.start_processes().expect("workers start"));
    black_box(&rt);
    elapsed
}

fn recover() -> Duration {
    let rt = Runtime::builder()
        .threads(1)
        .coroutine_workers(1)
        .processes(ProcessOptions::new().workers(1))
        .build()
        .expect("a runtime");
    rt.start_processes().expect("workers start");
    let start = Instant::now();
    let crashed = rt.spawn_process(crash::task(), ());
    assert!(crashed.join().is_err(), "the crash task crashed");
    // Sent once the crash is known, so that it waits for the replacement.
    let served = rt.spawn_process(inc::task(), 1);
    assert_eq!(served.join().expect("the replacement serves"), 2);
    start.elapsed()
}
