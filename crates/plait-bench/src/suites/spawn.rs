//! Thread-strand spawn + join of tiny tasks against raw rayon `ThreadPool::spawn`.
//!
//! The rayon baselines get the cheapest completion signal we know how to write: a result
//! slot per task in a preallocated array (no allocation, no shared counter), read back by
//! spinning on each slot in order. plait's tasks allocate their own slot and are joined
//! through their handles, in the same order.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::report::Row;

const NOT_DONE: u64 = u64::MAX;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(1_000_000);
    // 'static slots for rayon's 'static closures; allocated once, reset between runs.
    let slots: &'static [AtomicU64] = Box::leak((0..n).map(|_| AtomicU64::new(NOT_DONE)).collect());
    let runs = ctx.measure_interleaved(&mut [
        &mut || rayon_spawn(&ctx.rayon, slots),
        &mut || rayon_spawn_arc(&ctx.rayon, n),
        &mut || plait_spawn(&ctx.plait, n),
    ]);
    let case = "spawn + join, no-op";
    vec![
        Row::timed(
            "spawn",
            case,
            "rayon ThreadPool::spawn + per-task slot",
            n,
            &runs[0],
        )
        .note("slots preallocated side by side, 8 to a cache line"),
        Row::timed(
            "spawn",
            case,
            "rayon ThreadPool::spawn + per-task Arc slot",
            n,
            &runs[1],
        )
        .note("a heap slot per task, as a handle needs"),
        Row::timed("spawn", case, "plait spawn + Handle::join", n, &runs[2]),
    ]
}

fn rayon_spawn(pool: &rayon_core::ThreadPool, slots: &'static [AtomicU64]) -> Duration {
    for slot in slots {
        slot.store(NOT_DONE, Ordering::Relaxed);
    }
    let start = Instant::now();
    for (i, slot) in slots.iter().enumerate() {
        pool.spawn(move || slot.store(black_box(i as u64), Ordering::Release));
    }
    let mut sum = 0u64;
    for slot in slots {
        sum = sum.wrapping_add(wait_for(slot));
    }
    let elapsed = start.elapsed();
    check_sum(sum, slots.len() as u64);
    elapsed
}

fn rayon_spawn_arc(pool: &rayon_core::ThreadPool, n: u64) -> Duration {
    let mut slots = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        let slot = Arc::new(AtomicU64::new(NOT_DONE));
        slots.push(Arc::clone(&slot));
        pool.spawn(move || slot.store(black_box(i), Ordering::Release));
    }
    let mut sum = 0u64;
    for slot in slots {
        sum = sum.wrapping_add(wait_for(&slot));
    }
    let elapsed = start.elapsed();
    check_sum(sum, n);
    elapsed
}

/// Spins (then yields) until the slot is filled.
fn wait_for(slot: &AtomicU64) -> u64 {
    let mut spins = 0u32;
    loop {
        let value = slot.load(Ordering::Acquire);
        if value != NOT_DONE {
            return value;
        }
        spins += 1;
        if spins > 64 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

fn plait_spawn(rt: &plait::Runtime, n: u64) -> Duration {
    // Room for the handles, as the rayon baseline has room for its slots.
    let mut handles: Vec<plait::Handle<u64>> = Vec::with_capacity(n as usize);
    let start = Instant::now();
    handles.extend((0..n).map(|i| rt.spawn(move || black_box(i))));
    let mut sum = 0u64;
    for handle in handles {
        sum = sum.wrapping_add(handle.join().expect("a no-op task cannot fail"));
    }
    let elapsed = start.elapsed();
    check_sum(sum, n);
    elapsed
}

/// Guards against a benchmark that silently measures nothing.
pub(crate) fn check_sum(sum: u64, n: u64) {
    assert_eq!(sum, n * (n - 1) / 2, "the benchmark lost results");
}
