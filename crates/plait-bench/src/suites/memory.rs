//! Memory per idle coroutine (100,000 tasks each parked on a long sleep, with their handles
//! held) and per queued thread task (a million spawned behind busy threads, handles held).
//! Each measurement runs in a fresh child process (this binary, re-executed), as the Python
//! peer does: resident memory grown (peak RSS minus RSS before, the figure Python reports)
//! and live heap bytes counted by the allocator.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::context::{self, Context};
use crate::report::{Row, median};

const LONG: Duration = Duration::from_secs(3600);

/// What one child measured.
struct Sample {
    heap: f64,
    rss: f64,
    wall: Duration,
}

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let idle = "idle coroutine with a sleep timer, handle held";
    let queued = "queued thread task, not yet run, handle held";
    let mut rows = Vec::new();
    for (system, case, label, n) in [
        ("tokio", idle, "tokio::spawn + sleep", ctx.n(100_000)),
        ("plait", idle, "plait spawn_async + sleep", ctx.n(100_000)),
        (
            "rayon-queued",
            queued,
            "rayon ThreadPool::spawn + per-task Arc slot",
            ctx.n(1_000_000),
        ),
        (
            "plait-queued",
            queued,
            "plait spawn + Handle",
            ctx.n(1_000_000),
        ),
    ] {
        let samples: Vec<Sample> = (0..ctx.repeats).filter_map(|_| child(system, n)).collect();
        if samples.is_empty() {
            eprintln!("plait-bench: the memory child for {system} failed every time");
            continue;
        }
        let heap = median(&samples.iter().map(|s| s.heap).collect::<Vec<_>>()) / n as f64;
        let rss = median(&samples.iter().map(|s| s.rss).collect::<Vec<_>>()) / n as f64;
        let walls: Vec<Duration> = samples.iter().map(|s| s.wall).collect();
        let mut row = Row::timed("memory", case, label, n, &walls).note(format!(
            "{rss:.0} B resident, {heap:.0} B heap per task (fresh process)"
        ));
        row.bytes_per_task = Some(rss);
        row.heap_bytes_per_task = Some(heap);
        rows.push(row);
    }
    rows
}

/// Runs one measurement in a fresh copy of this program.
fn child(system: &str, n: u64) -> Option<Sample> {
    match context::memory_child(system, n)?.as_slice() {
        &[heap, rss, wall] => Some(Sample {
            heap,
            rss,
            wall: Duration::from_secs_f64(wall),
        }),
        _ => None,
    }
}

/// The child's side: prints "heap-bytes rss-bytes wall-seconds".
pub(crate) fn child_main(system: &str, n: u64) -> Result<(), String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Arc::new(AtomicUsize::new(0));
    let measured = match system {
        "tokio" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            measure(
                || started.load(Ordering::Acquire) >= n as usize,
                || {
                    (0..n)
                        .map(|_| rt.spawn(idle(started.clone())))
                        .collect::<Vec<_>>()
                },
            )
        }
        "plait" => {
            let rt = plait::Runtime::builder()
                .threads(threads)
                .coroutine_workers(threads)
                .build()
                .map_err(|e| e.to_string())?;
            measure(
                || started.load(Ordering::Acquire) >= n as usize,
                || {
                    (0..n)
                        .map(|_| rt.spawn_async(idle(started.clone())))
                        .collect::<Vec<_>>()
                },
            )
        }
        "rayon-queued" => queued_rayon(threads, n)?,
        "plait-queued" => queued_plait(threads, n)?,
        other => {
            return Err(format!(
                "no system {other:?} to measure; use tokio, plait, rayon-queued or plait-queued"
            ));
        }
    };
    let (heap, rss, wall) = measured;
    println!("{heap} {rss} {}", wall.as_secs_f64());
    // Exit without tearing the tasks down: nothing more to measure.
    std::process::exit(0);
}

/// Holds every pool thread in a task that waits on `release` without telling its pool (a
/// plait pool would otherwise put a spare thread in its place), so that what is spawned
/// next stays queued.
fn hold_threads(
    threads: usize,
    release: &Arc<AtomicBool>,
    spawn: impl Fn(Box<dyn FnOnce() + Send>),
) {
    let holding = Arc::new(AtomicUsize::new(0));
    for _ in 0..threads {
        let (release, holding) = (Arc::clone(release), Arc::clone(&holding));
        spawn(Box::new(move || {
            holding.fetch_add(1, Ordering::AcqRel);
            while !release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    while holding.load(Ordering::Acquire) < threads {
        std::thread::yield_now();
    }
}

/// A million rayon spawns queued behind busy threads, each with the heap slot its result
/// would need (what a handle holds).
fn queued_rayon(threads: usize, n: u64) -> Result<(f64, f64, Duration), String> {
    let pool = rayon_core::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let release = Arc::new(AtomicBool::new(false));
    hold_threads(threads, &release, |job| pool.spawn(job));
    Ok(measure(
        || true,
        || {
            (0..n)
                .map(|_| {
                    let slot = Arc::new(std::sync::OnceLock::<()>::new());
                    let filled = Arc::clone(&slot);
                    pool.spawn(move || {
                        let _ = filled.set(());
                    });
                    slot
                })
                .collect::<Vec<_>>()
        },
    ))
}

/// A million plait spawns queued behind busy threads, their handles held.
fn queued_plait(threads: usize, n: u64) -> Result<(f64, f64, Duration), String> {
    let rt = plait::Runtime::builder()
        .threads(threads)
        .coroutine_workers(1)
        .build()
        .map_err(|e| e.to_string())?;
    let release = Arc::new(AtomicBool::new(false));
    hold_threads(threads, &release, |job| drop(rt.spawn(job)));
    Ok(measure(
        || true,
        || (0..n).map(|_| rt.spawn(|| ())).collect::<Vec<_>>(),
    ))
}

/// One idle task: it says it has started, then sleeps on a timer far in the future.
async fn idle(started: Arc<AtomicUsize>) {
    started.fetch_add(1, Ordering::Release);
    tokio::time::sleep(LONG).await;
}

/// Spawns with `spawn`, waits until `settled` says every task is where it is measured (an
/// idle coroutine parked on its timer; a queued task needs no wait), and returns the heap
/// and resident memory grown, and the time it took.
fn measure<H>(settled: impl Fn() -> bool, spawn: impl FnOnce() -> Vec<H>) -> (f64, f64, Duration) {
    let rss_before = alloc::rss_bytes().unwrap_or(0);
    alloc::start();
    let begin = Instant::now();
    let handles = spawn();
    while !settled() {
        std::thread::yield_now();
    }
    let wall = begin.elapsed();
    let heap = alloc::live() as f64;
    alloc::stop();
    let rss = alloc::peak_rss_bytes()
        .unwrap_or(0)
        .saturating_sub(rss_before) as f64;
    std::hint::black_box(&handles);
    (heap, rss, wall)
}
