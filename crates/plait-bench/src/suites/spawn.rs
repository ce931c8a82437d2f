//! Thread-strand spawn + join of tiny tasks against raw rayon `ThreadPool::spawn`.
//!
//! The rayon baselines get the cheapest completion signal we know how to write: a result
//! slot per task in a preallocated array (no allocation, no shared counter), read back by
//! spinning on each slot in order. plait's tasks allocate their own slot and are joined
//! through their handles, in the same order.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::report::Row;

const NOT_DONE: u64 = u64::MAX;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(1_000_000);
    // 'static slots for rayon's 'static closures; allocated once, reset between runs.
    let slots: &'static [AtomicU64] = Box::leak((0..n).map(|_| AtomicU64::new(NOT_DONE)).collect());
    vec![
        Row::timed(
            "spawn",
            "spawn + join, no-op",
            "rayon ThreadPool::spawn + per-task slot",
            n,
            &ctx.measure(|| rayon_spawn(&ctx.rayon, slots)),
        ),
        Row::timed(
            "spawn",
            "spawn + join, no-op",
            "plait spawn + Handle::join",
            n,
            &ctx.measure(|| plait_spawn(&ctx.plait, n)),
        ),
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
        let mut spins = 0u32;
        loop {
            let value = slot.load(Ordering::Acquire);
            if value != NOT_DONE {
                sum = sum.wrapping_add(value);
                break;
            }
            spins += 1;
            if spins > 64 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let elapsed = start.elapsed();
    check_sum(sum, slots.len() as u64);
    elapsed
}

fn plait_spawn(rt: &plait::Runtime, n: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<plait::Handle<u64>> = (0..n).map(|i| rt.spawn(move || black_box(i))).collect();
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
