//! A CPU-bound kernel run 8 times: one thread, then plait's thread strand on every core.
//!
//! The kernel is Python's `sum(i * i for i in range(N))` from
//! `../shared/bench/peers/cpu_bound.py`, with `black_box` so the compiler cannot turn the
//! loop into a formula; N is 10x Python's so that each task takes milliseconds here too.

use std::hint::black_box;
use std::time::Duration;

use crate::context::{Context, time};
use crate::report::Row;

const TASKS: u64 = 8;
const KERNEL_N: u64 = 20_000_000;

/// Not inlined: each case then runs the very same machine code. Inlined into each caller,
/// the loop's placement differed from binary to binary, and one copy could run 1.6x slower
/// than another (seen with `perf`: the same work, 1.69x the samples in one closure).
#[inline(never)]
pub(crate) fn kernel(n: u64) -> u64 {
    (0..n).fold(0u64, |acc, i| {
        acc.wrapping_add(black_box(i).wrapping_mul(i))
    })
}

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(KERNEL_N);
    let expected = kernel(n);
    let case = format!("{TASKS} x sum(i*i for i in 0..{n})");
    let runs = ctx.measure_interleaved(&mut [
        &mut || {
            time(|| {
                for _ in 0..TASKS {
                    assert_eq!(kernel(n), expected);
                }
            })
        },
        &mut || {
            time(|| {
                let handles: Vec<_> = (0..TASKS)
                    .map(|_| ctx.plait.spawn(move || kernel(n)))
                    .collect();
                for h in handles {
                    assert_eq!(h.join().expect("the kernel cannot fail"), expected);
                }
            })
        },
        &mut || {
            time(|| {
                for r in ctx.plait.map(0..TASKS, move |_| kernel(n)) {
                    assert_eq!(r.expect("the kernel cannot fail"), expected);
                }
            })
        },
    ]);
    // Speedup run by run (the runs alternate), then the median: robust to a drifting machine.
    let speedup = |parallel: &[Duration]| {
        let ratios: Vec<f64> = runs[0]
            .iter()
            .zip(parallel)
            .map(|(one, many)| one.as_secs_f64() / many.as_secs_f64())
            .collect();
        crate::report::median(&ratios)
    };
    vec![
        Row::timed("cpu", &case, "sequential (1 thread)", TASKS, &runs[0]).note("speedup 1.00x"),
        Row::timed(
            "cpu",
            &case,
            &format!("plait spawn ({} threads)", ctx.threads),
            TASKS,
            &runs[1],
        )
        .note(format!("speedup {:.2}x", speedup(&runs[1]))),
        Row::timed(
            "cpu",
            &case,
            &format!("plait map ({} threads)", ctx.threads),
            TASKS,
            &runs[2],
        )
        .note(format!("speedup {:.2}x", speedup(&runs[2]))),
    ]
}
