//! 10,000 concurrent 10 ms waits (Python's `io_bound.py`): plait's coroutine strand against
//! raw tokio. The ideal is 10 ms; what exceeds it is the cost of the tasks.

use std::time::{Duration, Instant};

use crate::context::Context;
use crate::report::Row;

const WAITS: u64 = 10_000;
const WAIT: Duration = Duration::from_millis(10);

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let case = format!("{WAITS} x sleep {} ms, all at once", WAIT.as_millis());
    vec![
        Row::timed(
            "waits",
            &case,
            "tokio::spawn + sleep",
            WAITS,
            &ctx.measure(|| raw_tokio(&ctx.tokio)),
        ),
        Row::timed(
            "waits",
            &case,
            "plait spawn_async + sleep",
            WAITS,
            &ctx.measure(|| plait_async(&ctx.plait)),
        ),
    ]
}

fn raw_tokio(rt: &tokio::runtime::Runtime) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..WAITS)
            .map(|_| tokio::spawn(tokio::time::sleep(WAIT)))
            .collect();
        for h in handles {
            h.await.expect("a sleep cannot fail");
        }
        start.elapsed()
    })
}

fn plait_async(rt: &plait::Runtime) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..WAITS)
            .map(|_| rt.spawn_async(tokio::time::sleep(WAIT)))
            .collect();
        for h in handles {
            h.await.expect("a sleep cannot fail");
        }
        start.elapsed()
    })
}
