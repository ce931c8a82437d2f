//! Divide and conquer: a recursive sum split down to single items, so each task is one
//! `join` of two halves. Measures what a wait on a pool thread costs when the other half
//! was stolen: plait blocks with a spare thread in its place, rayon runs other work.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::spawn::check_sum;
use crate::context::Context;
use crate::report::Row;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(1 << 20);
    let runs = ctx.measure_interleaved(&mut [
        &mut || rayon_join(&ctx.rayon, n),
        &mut || plait_join(&ctx.plait, n),
        &mut || plait_spawn_join(&ctx.plait, n),
    ]);
    let case = "recursive sum split to single items, per leaf";
    vec![
        Row::timed("join", case, "rayon join", n, &runs[0]),
        Row::timed("join", case, "plait Runtime::join", n, &runs[1]),
        Row::timed("join", case, "plait spawn + Handle::join", n, &runs[2])
            .note("each split spawns its right half as a task and joins its handle"),
    ]
}

fn rayon_join(pool: &rayon_core::ThreadPool, n: u64) -> Duration {
    fn sum(lo: u64, hi: u64) -> u64 {
        if hi - lo <= 1 {
            return black_box(lo);
        }
        let mid = lo + (hi - lo) / 2;
        let (a, b) = rayon_core::join(|| sum(lo, mid), || sum(mid, hi));
        a.wrapping_add(b)
    }
    let start = Instant::now();
    let total = pool.install(|| sum(0, n));
    let elapsed = start.elapsed();
    check_sum(total, n);
    elapsed
}

fn plait_join(rt: &plait::Runtime, n: u64) -> Duration {
    fn sum(rt: &plait::Runtime, lo: u64, hi: u64) -> u64 {
        if hi - lo <= 1 {
            return black_box(lo);
        }
        let mid = lo + (hi - lo) / 2;
        let (a, b) = rt
            .join(|| sum(rt, lo, mid), || sum(rt, mid, hi))
            .expect("the sum cannot fail");
        a.wrapping_add(b)
    }
    on_pool(rt, n, sum)
}

fn plait_spawn_join(rt: &plait::Runtime, n: u64) -> Duration {
    fn sum(rt: &plait::Runtime, lo: u64, hi: u64) -> u64 {
        if hi - lo <= 1 {
            return black_box(lo);
        }
        let mid = lo + (hi - lo) / 2;
        let inner = rt.clone();
        let right = rt.spawn(move || sum(&inner, mid, hi));
        let left = sum(rt, lo, mid);
        left.wrapping_add(right.join().expect("the sum cannot fail"))
    }
    on_pool(rt, n, sum)
}

/// Times `sum` over `0..n`, started from a pool task, as rayon's `install` starts it on a
/// pool thread.
fn on_pool(rt: &plait::Runtime, n: u64, sum: fn(&plait::Runtime, u64, u64) -> u64) -> Duration {
    let start = Instant::now();
    let inner = rt.clone();
    let total = rt
        .spawn(move || sum(&inner, 0, n))
        .join()
        .expect("the sum cannot fail");
    let elapsed = start.elapsed();
    check_sum(total, n);
    elapsed
}
