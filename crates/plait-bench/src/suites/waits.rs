//! 10,000 concurrent 10 ms waits (Python's `io_bound.py`): plait's coroutine strand against
//! raw tokio. The ideal is 10 ms; what exceeds it is the cost of the tasks. Two shapes, as in
//! the coroutine suite: spawned from `block_on` on the main thread, and from a task on the
//! strand (as Python's `asyncio.gather` runs inside the event loop).

use std::time::{Duration, Instant};

use crate::context::Context;
use crate::report::Row;

// The case names below spell these out.
const WAITS: u64 = 10_000;
const WAIT: Duration = Duration::from_millis(10);

/// The case measured from the main thread.
pub(crate) const FROM_OUTSIDE: &str = "10000 x sleep 10 ms, all at once, from block_on";
/// The case measured from a task on the strand (the shape of Python's peer).
pub(crate) const FROM_INSIDE: &str = "10000 x sleep 10 ms, all at once, from a task on the strand";

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let runs = ctx.measure_interleaved(&mut [
        &mut || ctx.tokio.block_on(raw_tokio()),
        &mut || ctx.plait.block_on(plait_async(ctx.plait.clone())),
        &mut || {
            ctx.tokio
                .block_on(ctx.tokio.spawn(raw_tokio()))
                .expect("the measuring task cannot fail")
        },
        &mut || {
            let rt = ctx.plait.clone();
            ctx.plait
                .block_on(ctx.plait.spawn_async(plait_async(rt)))
                .expect("the measuring task cannot fail")
        },
    ]);
    let [tokio_out, plait_out, tokio_in, plait_in] =
        <[Vec<Duration>; 4]>::try_from(runs).expect("four cases");
    let tokio = "tokio::spawn + sleep";
    let plait = "plait spawn_async + sleep";
    vec![
        Row::timed("waits", FROM_OUTSIDE, tokio, WAITS, &tokio_out),
        Row::timed("waits", FROM_OUTSIDE, plait, WAITS, &plait_out),
        Row::timed("waits", FROM_INSIDE, tokio, WAITS, &tokio_in),
        Row::timed("waits", FROM_INSIDE, plait, WAITS, &plait_in),
    ]
}

async fn raw_tokio() -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..WAITS)
        .map(|_| tokio::spawn(tokio::time::sleep(WAIT)))
        .collect();
    for h in handles {
        h.await.expect("a sleep cannot fail");
    }
    start.elapsed()
}

async fn plait_async(rt: plait::Runtime) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..WAITS)
        .map(|_| rt.spawn_async(tokio::time::sleep(WAIT)))
        .collect();
    for h in handles {
        h.await.expect("a sleep cannot fail");
    }
    start.elapsed()
}
