//! An HTTP server on the coroutine strand whose handlers send work where it fits: a light
//! endpoint answered on the loop, a CPU-heavy one on the thread strand, a crash-prone one
//! in a worker process. Python's aiohttp or sanic would stall every request behind the
//! heavy handler unless it called `run_in_executor` itself.
//!
//! ```sh
//! cargo run --release -p plait-web --example web_server        # then, in another shell:
//! curl localhost:8080/hello; curl localhost:8080/heavy; curl localhost:8080/isolated/7
//! ```

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use plait::Runtime;

/// Burns `ms` milliseconds of this thread's CPU time (by its CPU clock, as the Python
/// peers burn theirs, so every language burns the same time): the heavy endpoint's work.
fn burn(ms: u64) -> u64 {
    let cpu = || {
        let at = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(
            at.tv_sec.unsigned_abs(),
            u32::try_from(at.tv_nsec).unwrap_or(0),
        )
    };
    let end = cpu() + Duration::from_millis(ms);
    let mut x: u64 = 0;
    while cpu() < end {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    x
}

/// Work that may crash (a C library, a parser of untrusted input): run in a worker process,
/// whose crash fails this request and nothing else.
#[plait::task]
fn risky(n: u64) -> u64 {
    n * n
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    plait::init(); // a worker process starts here and never returns
    let rt = Runtime::new()?;
    let app = Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        // What the Python peers' servers answer, for the benchmarks.
        .route("/", get(|| async { "Hello, World!" }))
        .route("/light", get(|| async { "Hello, World!" }))
        .route(
            "/heavy",
            get(|State(rt): State<Runtime>| async move {
                // On the thread strand: the coroutine waits, the loop serves on.
                match rt.spawn(|| burn(5)).await {
                    Ok(x) => format!("{x}\n"),
                    Err(error) => format!("failed: {error}\n"),
                }
            }),
        )
        .route(
            "/isolated/{n}",
            get(|State(rt): State<Runtime>, Path(n): Path<u64>| async move {
                match rt.spawn_process(risky::task(), n).await {
                    Ok(square) => format!("{square}\n"),
                    Err(error) => format!("failed: {error}\n"),
                }
            }),
        )
        .with_state(rt.clone());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}"))?;
    let server = plait_web::serve(&rt, listener, app)?;
    println!("serving on http://{}", server.local_addr());
    server.join()?;
    Ok(())
}
