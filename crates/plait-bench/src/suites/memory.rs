//! Memory per idle coroutine: 100,000 tasks each parked on a long sleep, with their handles
//! held, counted by the allocator (live heap bytes) and by the kernel (resident set).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::context::Context;
use crate::report::Row;

const LONG: Duration = Duration::from_secs(3600);

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(100_000);
    let mut rows = Vec::new();
    for system in ["tokio::spawn + sleep", "plait spawn_async + sleep"] {
        let mut heap = Vec::new();
        let mut rss = Vec::new();
        let mut walls = Vec::new();
        for _ in 0..ctx.repeats {
            let (bytes, resident, wall) = if system.starts_with("tokio") {
                idle_tokio(ctx, n)
            } else {
                idle_plait(ctx, n)
            };
            heap.push(bytes);
            rss.push(resident);
            walls.push(wall);
        }
        let heap_per_task = crate::report::median(&heap) / n as f64;
        let rss_per_task = crate::report::median(&rss) / n as f64;
        let mut row = Row::timed(
            "memory",
            "idle coroutine with a sleep timer, handle held",
            system,
            n,
            &walls,
        )
        .note(format!(
            "{heap_per_task:.0} B heap, {rss_per_task:.0} B resident per task"
        ));
        row.bytes_per_task = Some(heap_per_task);
        rows.push(row);
    }
    rows
}

/// Waits until every task has run once and parked on its timer.
fn await_all_parked(started: &AtomicUsize, n: u64) {
    while started.load(Ordering::Acquire) < n as usize {
        std::thread::yield_now();
    }
}

fn idle_tokio(ctx: &Context, n: u64) -> (f64, f64, Duration) {
    let started = Arc::new(AtomicUsize::new(0));
    let rss_before = alloc::rss_bytes().unwrap_or(0);
    alloc::start();
    let begin = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let started = started.clone();
            ctx.tokio.spawn(async move {
                started.fetch_add(1, Ordering::Release);
                tokio::time::sleep(LONG).await;
            })
        })
        .collect();
    await_all_parked(&started, n);
    let wall = begin.elapsed();
    let heap = alloc::live() as f64;
    let rss = alloc::rss_bytes().unwrap_or(0).saturating_sub(rss_before) as f64;
    alloc::stop();
    for h in &handles {
        h.abort();
    }
    drop(handles);
    while ctx.tokio.metrics().num_alive_tasks() > 0 {
        std::thread::yield_now();
    }
    (heap, rss, wall)
}

fn idle_plait(ctx: &Context, n: u64) -> (f64, f64, Duration) {
    let started = Arc::new(AtomicUsize::new(0));
    let rss_before = alloc::rss_bytes().unwrap_or(0);
    alloc::start();
    let begin = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let started = started.clone();
            ctx.plait.spawn_async(async move {
                started.fetch_add(1, Ordering::Release);
                tokio::time::sleep(LONG).await;
            })
        })
        .collect();
    await_all_parked(&started, n);
    let wall = begin.elapsed();
    let heap = alloc::live() as f64;
    let rss = alloc::rss_bytes().unwrap_or(0).saturating_sub(rss_before) as f64;
    alloc::stop();
    for h in &handles {
        h.cancel();
    }
    drop(handles);
    while ctx.plait.in_flight().1 > 0 {
        std::thread::yield_now();
    }
    (heap, rss, wall)
}
