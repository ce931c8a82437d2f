//! Coroutine-strand spawn + await of tiny tasks against raw tokio, both on a runtime with one
//! worker per core, in two shapes:
//!
//! * from `block_on` on the main thread, outside the workers: every spawn goes through the
//!   runtime's shared injection queue;
//! * from a task already running on the strand, as Python's `asyncio.create_task` is called
//!   from inside the event loop (`tiny_tasks.py`): spawns go to that worker's own queue.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::spawn::check_sum;
use crate::context::Context;
use crate::report::Row;

/// The case measured from the main thread.
pub(crate) const FROM_OUTSIDE: &str = "spawn + await, no-op, from block_on";
/// The case measured from a task on the strand (the shape of Python's peer).
pub(crate) const FROM_INSIDE: &str = "spawn + await, no-op, from a task on the strand";

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(1_000_000);
    let runs = ctx.measure_interleaved(&mut [
        &mut || ctx.tokio.block_on(raw_tokio(n)),
        &mut || ctx.plait.block_on(plait_async(ctx.plait.clone(), n)),
        &mut || {
            ctx.tokio
                .block_on(ctx.tokio.spawn(raw_tokio(n)))
                .expect("the measuring task cannot fail")
        },
        &mut || {
            let rt = ctx.plait.clone();
            ctx.plait
                .block_on(ctx.plait.spawn_async(plait_async(rt, n)))
                .expect("the measuring task cannot fail")
        },
    ]);
    let [tokio_out, plait_out, tokio_in, plait_in] =
        <[Vec<Duration>; 4]>::try_from(runs).expect("four cases");
    let tokio = "tokio::spawn + JoinHandle.await";
    let plait = "plait spawn_async + Handle.await";
    vec![
        Row::timed("coroutine", FROM_OUTSIDE, tokio, n, &tokio_out),
        Row::timed("coroutine", FROM_OUTSIDE, plait, n, &plait_out),
        Row::timed("coroutine", FROM_INSIDE, tokio, n, &tokio_in),
        Row::timed("coroutine", FROM_INSIDE, plait, n, &plait_in),
    ]
}

async fn raw_tokio(n: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| tokio::spawn(async move { black_box(i) }))
        .collect();
    let mut sum = 0u64;
    for h in handles {
        sum = sum.wrapping_add(h.await.expect("a no-op task cannot fail"));
    }
    let elapsed = start.elapsed();
    check_sum(sum, n);
    elapsed
}

async fn plait_async(rt: plait::Runtime, n: u64) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| rt.spawn_async(async move { black_box(i) }))
        .collect();
    let mut sum = 0u64;
    for h in handles {
        sum = sum.wrapping_add(h.await.expect("a no-op task cannot fail"));
    }
    let elapsed = start.elapsed();
    check_sum(sum, n);
    elapsed
}
