//! Many GETs with a bound on how many are in flight: aiohttp's `ClientSession` with
//! `asyncio.gather` and a semaphore, as plait does it. reqwest runs on the coroutine
//! strand; `map_async_unordered` keeps at most 100 requests in flight. The URLs are served
//! by a local server started here, so the example needs no network.
//!
//! ```sh
//! cargo run --release -p plait-web --example http_client
//! ```

use std::time::Instant;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use plait::Runtime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::new()?;
    let app = Router::new().route(
        "/item/{n}",
        get(|Path(n): Path<u64>| async move { n.to_string() }),
    );
    let server = plait_web::serve(&rt, std::net::TcpListener::bind("127.0.0.1:0")?, app)?;
    let base = format!("http://{}", server.local_addr());

    let client = reqwest::Client::new();
    let urls: Vec<String> = (0..10_000).map(|n| format!("{base}/item/{n}")).collect();
    let started = Instant::now();
    let mut total: u64 = 0;
    // Each comes with its index in the input, in the order they end.
    for (_, body) in rt.map_async_unordered(urls, 100, move |url| {
        let client = client.clone();
        async move {
            let body = client
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            Ok::<u64, reqwest::Error>(body.parse().unwrap_or(0))
        }
    }) {
        total += body??;
    }
    let took = started.elapsed();
    println!(
        "10,000 GETs, 100 in flight, in {took:.2?} ({:.0} a second); the items sum to {total}",
        10_000.0 / took.as_secs_f64()
    );
    server.stop()?;
    Ok(())
}
