//! Scoped spawns against raw rayon `scope` + `spawn`: tasks write into a borrowed slice.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::spawn::check_sum;
use crate::context::Context;
use crate::report::Row;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(1_000_000);
    let slots: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let runs = ctx.measure_interleaved(&mut [
        &mut || rayon_scope(&ctx.rayon, &slots),
        &mut || plait_scope_on_pool(&ctx.plait, &slots),
        &mut || plait_scope(&ctx.plait, &slots),
        &mut || plait_scope_join(&ctx.plait, n),
    ]);
    let writing = "scoped spawn, no-op writing a borrowed slot";
    vec![
        Row::timed("scope", writing, "rayon scope + spawn", n, &runs[0])
            .note("rayon runs the scope's closure on a pool thread"),
        Row::timed(
            "scope",
            writing,
            "plait scope + spawn on a pool thread",
            n,
            &runs[1],
        )
        .note("the scope called from a task: it spawns from a pool thread, as rayon's does"),
        Row::timed(
            "scope",
            writing,
            "plait scope + spawn from the caller's thread",
            n,
            &runs[2],
        )
        .note("plait runs the closure in place: spawns go through the shared injector"),
        Row::timed(
            "scope",
            "scoped spawn, no-op returning its value",
            "plait scope + spawn + ScopedHandle::join",
            n,
            &runs[3],
        ),
    ]
}

fn sum_slots(slots: &[AtomicU64]) -> u64 {
    slots
        .iter()
        .fold(0u64, |acc, s| acc.wrapping_add(s.load(Ordering::Relaxed)))
}

fn rayon_scope(pool: &rayon_core::ThreadPool, slots: &[AtomicU64]) -> Duration {
    let start = Instant::now();
    pool.scope(|s| {
        for (i, slot) in slots.iter().enumerate() {
            s.spawn(move |_| slot.store(black_box(i as u64), Ordering::Relaxed));
        }
    });
    let elapsed = start.elapsed();
    check_sum(sum_slots(slots), slots.len() as u64);
    elapsed
}

fn plait_scope(rt: &plait::Runtime, slots: &[AtomicU64]) -> Duration {
    let start = Instant::now();
    rt.scope(|s| {
        for (i, slot) in slots.iter().enumerate() {
            drop(s.spawn(move || slot.store(black_box(i as u64), Ordering::Relaxed)));
        }
    });
    let elapsed = start.elapsed();
    check_sum(sum_slots(slots), slots.len() as u64);
    elapsed
}

/// The same scope, called from inside a pool task (timed from the caller, hop included).
fn plait_scope_on_pool(rt: &plait::Runtime, slots: &[AtomicU64]) -> Duration {
    let start = Instant::now();
    rt.scope(|outer| {
        outer
            .spawn(|| {
                rt.scope(|s| {
                    for (i, slot) in slots.iter().enumerate() {
                        drop(s.spawn(move || slot.store(black_box(i as u64), Ordering::Relaxed)));
                    }
                });
            })
            .join()
            .expect("the scope cannot fail");
    });
    let elapsed = start.elapsed();
    check_sum(sum_slots(slots), slots.len() as u64);
    elapsed
}

fn plait_scope_join(rt: &plait::Runtime, n: u64) -> Duration {
    let start = Instant::now();
    let sum = rt.scope(|s| {
        let handles: Vec<_> = (0..n).map(|i| s.spawn(move || black_box(i))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a no-op task cannot fail"))
            .fold(0u64, u64::wrapping_add)
    });
    let elapsed = start.elapsed();
    check_sum(sum, n);
    elapsed
}
