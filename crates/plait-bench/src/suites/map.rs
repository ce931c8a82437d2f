//! A parallel map of tiny items: plait's lazy, batched map against rayon's `par_iter` and a
//! plain sequential loop, each collecting `x + 1` for every item into a `Vec`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::context::Context;
use crate::report::Row;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(10_000_000);
    vec![
        Row::timed(
            "map",
            "map x+1 over 0..n, collect",
            "sequential iterator (one thread)",
            n,
            &ctx.measure(|| sequential(n)),
        ),
        Row::timed(
            "map",
            "map x+1 over 0..n, collect",
            "rayon par_iter",
            n,
            &ctx.measure(|| rayon_par_iter(&ctx.rayon, n)),
        ),
        Row::timed(
            "map",
            "map x+1 over 0..n, collect",
            "plait map (lazy, ordered)",
            n,
            &ctx.measure(|| plait_map(&ctx.plait, n)),
        ),
    ]
}

fn check(out: &[u64], n: u64) {
    assert_eq!(out.len() as u64, n, "the benchmark lost results");
    assert_eq!(out.last().copied(), Some(n));
}

fn sequential(n: u64) -> Duration {
    let start = Instant::now();
    let out: Vec<u64> = (0..n).map(|x| black_box(x) + 1).collect();
    let elapsed = start.elapsed();
    check(&out, n);
    elapsed
}

fn rayon_par_iter(pool: &rayon_core::ThreadPool, n: u64) -> Duration {
    let start = Instant::now();
    let out: Vec<u64> = pool.install(|| (0..n).into_par_iter().map(|x| black_box(x) + 1).collect());
    let elapsed = start.elapsed();
    check(&out, n);
    elapsed
}

fn plait_map(rt: &plait::Runtime, n: u64) -> Duration {
    let start = Instant::now();
    let out: Vec<u64> = rt
        .map(0..n, |x| black_box(x) + 1)
        .map(|r| r.expect("x + 1 cannot fail"))
        .collect();
    let elapsed = start.elapsed();
    check(&out, n);
    elapsed
}
