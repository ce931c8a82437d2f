//! Coroutine-strand spawn + await of tiny tasks against raw tokio, both awaited from a
//! `block_on` on the main thread, both on a runtime with one worker per core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::spawn::check_sum;
use crate::context::Context;
use crate::report::Row;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(1_000_000);
    let runs = ctx.measure_interleaved(&mut [&mut || raw_tokio(&ctx.tokio, n), &mut || {
        plait_async(&ctx.plait, n)
    }]);
    let case = "spawn + await, no-op";
    vec![
        Row::timed(
            "coroutine",
            case,
            "tokio::spawn + JoinHandle.await",
            n,
            &runs[0],
        ),
        Row::timed(
            "coroutine",
            case,
            "plait spawn_async + Handle.await",
            n,
            &runs[1],
        ),
    ]
}

fn raw_tokio(rt: &tokio::runtime::Runtime, n: u64) -> Duration {
    let (elapsed, sum) = rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| tokio::spawn(async move { black_box(i) }))
            .collect();
        let mut sum = 0u64;
        for h in handles {
            sum = sum.wrapping_add(h.await.expect("a no-op task cannot fail"));
        }
        (start.elapsed(), sum)
    });
    check_sum(sum, n);
    elapsed
}

fn plait_async(rt: &plait::Runtime, n: u64) -> Duration {
    let (elapsed, sum) = rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| rt.spawn_async(async move { black_box(i) }))
            .collect();
        let mut sum = 0u64;
        for h in handles {
            sum = sum.wrapping_add(h.await.expect("a no-op task cannot fail"));
        }
        (start.elapsed(), sum)
    });
    check_sum(sum, n);
    elapsed
}
