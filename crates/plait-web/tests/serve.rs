//! An HTTP server on the coroutine strand, as a user writes one: handlers that await work
//! on the thread strand and in worker processes, a slow handler that holds up no other,
//! a stop or a runtime shutdown that answers the requests in flight, and a client that
//! keeps a bound on the requests it has in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use plait::Runtime;

plait::test_worker!();

/// Runs in a worker process: the process it ran in.
#[plait::task(name = "web_test.pid")]
fn pid(_: ()) -> u32 {
    std::process::id()
}

fn get_text(rt: &Runtime, url: String) -> Result<(u16, String), reqwest::Error> {
    rt.block_on(async move {
        let response = reqwest::get(url).await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    })
}

fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

#[test]
fn a_handler_that_waits_on_the_thread_strand_holds_up_no_other_request() {
    // Two threads, whatever the machine: each heavy handler holds one.
    let rt = Runtime::builder().threads(2).build().unwrap();
    // The heavy handlers block a pool thread each until the light request has been
    // answered: if they held the loop, it never would be.
    let gate = Arc::new(Barrier::new(3));
    let app = Router::new()
        .route("/light", get(|| async { "light" }))
        .route(
            "/heavy",
            get(
                |State((rt, gate)): State<(Runtime, Arc<Barrier>)>| async move {
                    rt.spawn(move || {
                        gate.wait();
                        "heavy"
                    })
                    .await
                    .unwrap()
                },
            ),
        )
        .with_state((rt.clone(), Arc::clone(&gate)));
    let server = plait_web::serve(&rt, listener(), app).unwrap();
    let base = format!("http://{}", server.local_addr());
    let heavies: Vec<_> = (0..2)
        .map(|_| {
            let (rt, url) = (rt.clone(), format!("{base}/heavy"));
            std::thread::spawn(move || get_text(&rt, url).unwrap())
        })
        .collect();
    let light = get_text(&rt, format!("{base}/light")).unwrap();
    assert_eq!(light, (200, "light".to_owned()));
    gate.wait();
    for heavy in heavies {
        assert_eq!(heavy.join().unwrap(), (200, "heavy".to_owned()));
    }
    server.stop().unwrap();
}

#[test]
fn a_handler_awaits_a_worker_process() {
    let rt = Runtime::new().unwrap();
    let app = Router::new()
        .route(
            "/pid",
            get(|State(rt): State<Runtime>| async move {
                rt.spawn_process(pid::task(), ()).await.unwrap().to_string()
            }),
        )
        .with_state(rt.clone());
    let server = plait_web::serve(&rt, listener(), app).unwrap();
    let (status, body) = get_text(&rt, format!("http://{}/pid", server.local_addr())).unwrap();
    assert_eq!(status, 200);
    let worker: u32 = body.parse().unwrap();
    assert_ne!(worker, std::process::id(), "it ran in a worker process");
    server.stop().unwrap();
}

/// What the slow handler holds: the runtime, a word that it started, and when to finish.
type Slow = (
    Runtime,
    mpsc::Sender<()>,
    Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
);

#[test]
fn a_runtime_shutdown_answers_the_requests_in_flight_and_takes_no_more() {
    let rt = Runtime::new().unwrap();
    let (started, handler_started) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(std::sync::Mutex::new(released));
    let app = Router::new()
        .route(
            "/slow",
            get(|State((rt, started, released)): State<Slow>| async move {
                // Finishes when the test says so, on the thread strand. Spawned before the
                // test hears that the request started, so that the shutdown the test then
                // begins finds the work in flight (a spawn after it is refused).
                let work = rt.spawn(move || {
                    let _ = released.lock().unwrap().recv();
                    "42"
                });
                let _ = started.send(());
                work.await.unwrap()
            }),
        )
        .with_state((rt.clone(), started, released));
    let server = plait_web::serve(&rt, listener(), app).unwrap();
    let addr = server.local_addr();
    let client_rt = Runtime::new().unwrap();
    let in_flight = {
        let client_rt = client_rt.clone();
        std::thread::spawn(move || get_text(&client_rt, format!("http://{addr}/slow")))
    };
    handler_started
        .recv_timeout(Duration::from_secs(30))
        .unwrap();
    let shutdown = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.shutdown(Duration::from_secs(30)))
    };
    // Once the shutdown has begun, the server takes no new connection...
    let refused = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        std::net::TcpStream::connect(addr).is_err()
    });
    assert!(refused, "the listener closed");
    // ...and the request in flight is answered.
    release.send(()).unwrap();
    assert_eq!(in_flight.join().unwrap().unwrap(), (200, "42".to_owned()));
    let report = shutdown.join().unwrap();
    assert_eq!(report.coroutines.cancelled, 0, "{report:?}");
    server.join().unwrap();
}

#[test]
fn a_client_keeps_its_bound_on_requests_in_flight() {
    let rt = Runtime::new().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/item/{n}",
            get(
                |State((now, most)): State<(Arc<AtomicUsize>, Arc<AtomicUsize>)>,
                 Path(n): Path<u64>| async move {
                    let here = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(here, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    n.to_string()
                },
            ),
        )
        .with_state((Arc::clone(&now), Arc::clone(&most)));
    let server = plait_web::serve(&rt, listener(), app).unwrap();
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::new();
    let urls: Vec<String> = (0..300).map(|n| format!("{base}/item/{n}")).collect();
    let mut sum = 0;
    for (_, body) in rt.map_async_unordered(urls, 16, move |url| {
        let client = client.clone();
        async move { client.get(url).send().await?.text().await }
    }) {
        sum += body.unwrap().unwrap().parse::<u64>().unwrap();
    }
    assert_eq!(sum, (0..300).sum::<u64>());
    let most = most.load(Ordering::SeqCst);
    assert!(
        (2..=16).contains(&most),
        "{most} requests in flight at once"
    );
    server.stop().unwrap();
}
