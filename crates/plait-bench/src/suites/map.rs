//! A parallel map of tiny items: plait's lazy, batched map against rayon's `par_iter` and a
//! plain sequential loop, each collecting `x + 1` for every item into a `Vec`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::context::Context;
use crate::report::Row;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(10_000_000);
    let runs = ctx.measure_interleaved(&mut [
        &mut || sequential(n),
        &mut || rayon_par_iter(&ctx.rayon, n),
        &mut || plait_map(&ctx.plait, n),
    ]);
    let case = "map x+1 over 0..n, collect";
    vec![
        Row::timed("map", case, "sequential iterator (one thread)", n, &runs[0]),
        Row::timed("map", case, "rayon par_iter", n, &runs[1]),
        Row::timed("map", case, "plait map (lazy, ordered)", n, &runs[2]),
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
