//! Many GETs with a bound on how many are in flight: aiohttp's `ClientSession` with
//! `asyncio.gather` and a semaphore, as plait does it. reqwest runs on the coroutine
//! strand; `map_async_unordered` keeps at most 100 requests in flight. The URLs are served
//! by a local server started here, so the example needs no network; or, given a URL, it
//! fetches that one 10,000 times (the benchmark, against the same server as aiohttp's).
//!
//! ```sh
//! cargo run --release -p plait-web --example http_client
//! cargo run --release -p plait-web --example http_client -- http://127.0.0.1:18082/light
//! ```

use std::time::Instant;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use plait::Runtime;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::new()?;
    if let Some(url) = std::env::args().nth(1) {
        return fetch_one_url(&rt, &url);
    }
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

/// Fetches `url` 10,000 times, 100 in flight, three times after a warm-up; prints each.
fn fetch_one_url(rt: &Runtime, url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    for run in 0..4 {
        let started = Instant::now();
        let client = client.clone();
        let url = url.to_owned();
        for (_, body) in rt.map_async_unordered(0..10_000, 100, move |_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await
            }
        }) {
            body??;
        }
        let took = started.elapsed();
        if run > 0 {
            println!(
                "run {run}: 10,000 GETs in {took:.3?} ({:.0} a second)",
                10_000.0 / took.as_secs_f64()
            );
        }
    }
    Ok(())
}
