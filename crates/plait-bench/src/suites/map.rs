//! A parallel map of tiny items (`x + 1`), against rayon and a plain sequential loop.
//!
//! Three cases, each with its own rows:
//! * **indexed**: over `0..n`, collected into a `Vec`: rayon's `par_iter` splits the range
//!   and collects in place; plait's `collect_vec` writes in place from a shared iterator; the
//!   lazy map hands every result to the iterating thread.
//! * **general**: over an iterator that does not know its length (a filtered range), so
//!   nothing can split it: rayon's `par_bridge` (which loses the order), plait's `collect_vec`
//!   and lazy map (which keep it).
//! * **consumed**: the lazy map's results summed as they arrive, ordered and unordered,
//!   with rayon's `par_iter().sum()` for reference: the cost of the hand-off alone.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::context::Context;
use crate::report::Row;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(10_000_000);
    let (rt, pool) = (&ctx.plait, &ctx.rayon);
    let runs = ctx.measure_interleaved(&mut [
        &mut || collected(n, || (0..n).map(|x| black_box(x) + 1).collect()),
        &mut || {
            collected(n, || {
                pool.install(|| (0..n).into_par_iter().map(|x| black_box(x) + 1).collect())
            })
        },
        &mut || {
            collected(n, || {
                rt.map(0..n, |x| black_box(x) + 1).collect_vec().unwrap()
            })
        },
        &mut || collected(n, || iterated(rt.map(0..n, |x| black_box(x) + 1))),
        &mut || collected(n, || general(n).map(|x| black_box(x) + 1).collect()),
        &mut || {
            collected(n, || {
                let mut out: Vec<u64> =
                    pool.install(|| general(n).par_bridge().map(|x| black_box(x) + 1).collect());
                // Only so the check below can read it: not timed apart, but cheap next to
                // the map (par_bridge returns the results in no order).
                out.sort_unstable();
                out
            })
        },
        &mut || {
            collected(n, || {
                rt.map(general(n), |x| black_box(x) + 1)
                    .collect_vec()
                    .unwrap()
            })
        },
        &mut || collected(n, || iterated(rt.map(general(n), |x| black_box(x) + 1))),
        &mut || {
            summed(n, || {
                pool.install(|| (0..n).into_par_iter().map(|x| black_box(x) + 1).sum())
            })
        },
        &mut || {
            summed(n, || {
                rt.map(0..n, |x| black_box(x) + 1)
                    .map(|r| r.expect("x + 1 cannot fail"))
                    .sum()
            })
        },
        &mut || {
            summed(n, || {
                rt.map_unordered(0..n, |x| black_box(x) + 1)
                    .map(|(_, r)| r.expect("x + 1 cannot fail"))
                    .sum()
            })
        },
    ]);
    let indexed = "map x+1 over 0..n (indexed), collect";
    let unknown = "map x+1 over a filtered 0..n (length unknown), collect";
    let consumed = "map x+1 over 0..n, results summed as they arrive";
    let mut runs = runs.into_iter();
    let mut row = |case: &str, system: &str| {
        Row::timed(
            "map",
            case,
            system,
            n,
            &runs.next().expect("one run list per row"),
        )
    };
    let mut rows = vec![
        row(indexed, "sequential iterator (one thread)"),
        row(indexed, "rayon par_iter + collect"),
        row(indexed, "plait map + collect_vec"),
        row(indexed, "plait map, iterated (lazy, ordered)"),
        row(unknown, "sequential iterator (one thread)"),
        row(unknown, "rayon par_bridge + collect").note("rayon loses the order; sorted after"),
        row(unknown, "plait map + collect_vec"),
        row(unknown, "plait map, iterated (lazy, ordered)"),
        row(consumed, "rayon par_iter + sum"),
        row(consumed, "plait map, iterated (lazy, ordered)"),
        row(consumed, "plait map_unordered, iterated (lazy)"),
    ];
    rows.extend(sizes(ctx));
    rows
}

/// Where does going parallel start to pay? `collect` of `x + 1` over `0..n` for small `n`,
/// each timed over enough calls to make a million items (per-task figures are per item).
fn sizes(ctx: &Context) -> Vec<Row> {
    let (rt, pool) = (&ctx.plait, &ctx.rayon);
    let total = ctx.n(1_000_000);
    let mut rows = Vec::new();
    for n in [100u64, 1_000, 10_000, 100_000, 1_000_000] {
        let calls = (total / n).max(1);
        let runs = ctx.measure_interleaved(&mut [
            &mut || repeated(calls, n, || (0..n).map(|x| black_box(x) + 1).collect()),
            &mut || {
                repeated(calls, n, || {
                    pool.install(|| (0..n).into_par_iter().map(|x| black_box(x) + 1).collect())
                })
            },
            &mut || {
                repeated(calls, n, || {
                    rt.map(0..n, |x| black_box(x) + 1).collect_vec().unwrap()
                })
            },
        ]);
        let case = format!("map x+1 over 0..{n}, collect, {calls} times");
        for (system, runs) in [
            "sequential iterator (one thread)",
            "rayon par_iter + collect",
            "plait map + collect_vec",
        ]
        .into_iter()
        .zip(runs)
        {
            rows.push(Row::timed("map", &case, system, calls * n, &runs));
        }
    }
    rows
}

/// Times `calls` calls of `make`, checking each output.
fn repeated(calls: u64, n: u64, mut make: impl FnMut() -> Vec<u64>) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        let out = black_box(make());
        assert_eq!(out.len() as u64, n, "the benchmark lost results");
        assert_eq!(out.last().copied(), Some(n));
    }
    start.elapsed()
}

/// An input that does not know its length: nothing can split it or size its output.
fn general(n: u64) -> impl Iterator<Item = u64> + Send {
    (0..n).filter(|x| black_box(*x) != u64::MAX)
}

fn iterated(map: impl Iterator<Item = plait::Result<u64>>) -> Vec<u64> {
    map.map(|r| r.expect("x + 1 cannot fail")).collect()
}

/// Times `make` and checks its output: every `x + 1`, in order.
fn collected(n: u64, make: impl FnOnce() -> Vec<u64>) -> Duration {
    let start = Instant::now();
    let out = make();
    let elapsed = start.elapsed();
    assert_eq!(out.len() as u64, n, "the benchmark lost results");
    assert_eq!(out.first().copied(), Some(1));
    assert_eq!(out.last().copied(), Some(n));
    elapsed
}

/// Times `make` and checks the sum of every `x + 1`.
fn summed(n: u64, make: impl FnOnce() -> u64) -> Duration {
    let start = Instant::now();
    let total = make();
    let elapsed = start.elapsed();
    assert_eq!(total, n * (n + 1) / 2, "the benchmark lost results");
    elapsed
}
