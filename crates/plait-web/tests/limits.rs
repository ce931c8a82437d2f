//! What a server lets its clients hold: a client that sends nothing or dribbles its
//! headers is cut off, connections beyond the limit wait their turn, and a stop is not
//! held up by a stream of events or a long poll.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use plait::Runtime;
use plait_web::Limits;

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn start(rt: &Runtime, app: Router, limits: Limits) -> plait_web::Serving {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    plait_web::serve_with(rt, listener, app, limits).unwrap()
}

/// Reads until the server closes the connection (or `within` passes: a failure).
fn read_to_close(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got,
        Err(error) if error.kind() == ErrorKind::ConnectionReset => got,
        Err(error) => panic!("the connection was not closed within {within:?}: {error}"),
    }
}

fn get_hello(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    String::from_utf8_lossy(&read_to_close(&mut stream, Duration::from_secs(10))).into_owned()
}

#[test]
fn a_client_that_sends_nothing_is_cut_off_and_the_rest_are_served() {
    let rt = Runtime::new().unwrap();
    let timeout = Duration::from_millis(300);
    let server = start(&rt, hello(), Limits::default().header_timeout(timeout));
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    let opened = Instant::now();
    assert!(get_hello(server.local_addr()).ends_with("hello"));
    read_to_close(&mut silent, Duration::from_secs(10));
    assert!(opened.elapsed() >= timeout, "not before its time");
    server.stop().unwrap();
}

#[test]
fn a_client_that_dribbles_its_headers_is_cut_off() {
    let rt = Runtime::new().unwrap();
    let server = start(
        &rt,
        hello(),
        Limits::default().header_timeout(Duration::from_millis(500)),
    );
    let mut slow = TcpStream::connect(server.local_addr()).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // A header line every 100 ms, for far longer than the timeout: slowloris.
    let mut cut = false;
    for n in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if slow
            .write_all(format!("X-Slow-{n}: 1\r\n").as_bytes())
            .is_err()
        {
            cut = true;
            break;
        }
    }
    if !cut {
        // Writes can succeed into a closed socket's buffer; the read tells.
        let answer = read_to_close(&mut slow, Duration::from_secs(5));
        assert!(!String::from_utf8_lossy(&answer).contains("hello"));
    }
    assert!(get_hello(server.local_addr()).ends_with("hello"));
    server.stop().unwrap();
}

#[test]
fn connections_beyond_the_limit_wait_until_one_closes() {
    let rt = Runtime::new().unwrap();
    let server = start(&rt, hello(), Limits::default().max_connections(2));
    let addr = server.local_addr();
    // Two keep-alive connections, each answered once and then held open.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut buf = [0_u8; 256];
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let n = stream.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).ends_with("hello"));
            stream
        })
        .collect();
    let third = std::thread::spawn(move || get_hello(addr));
    // The third waits in the backlog while both are held...
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !third.is_finished(),
        "a third connection was taken beside two"
    );
    // ...and is served once one closes.
    drop(held.pop());
    assert!(third.join().unwrap().ends_with("hello"));
    server.stop().unwrap();
}

#[test]
fn a_stop_ends_a_stream_of_events_and_answers_a_long_poll() {
    let rt = Runtime::new().unwrap();
    let folder = std::env::temp_dir().join(format!("plait-web-limits-{}", std::process::id()));
    std::fs::remove_dir_all(&folder).ok();
    let store: Arc<dyn plait_queue::Store> =
        Arc::new(plait_queue::SqliteStore::open(folder.join("queue.db")).unwrap());
    let id = store
        .enqueue(&plait_queue::NewTask::new(
            plait_queue::Payload::command(["true"]).encode(),
        ))
        .unwrap()
        .id;
    let app = plait_web::dashboard::Dashboard::builder()
        .queue(store)
        .build();
    let server = start(&rt, app, Limits::default());
    let addr = server.local_addr();

    let mut events = TcpStream::connect(addr).unwrap();
    events
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0_u8; 512];
    events
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = events.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("text/event-stream"));

    let mut poll = TcpStream::connect(addr).unwrap();
    poll.write_all(
        format!("GET /api/tasks/{id}/result?wait=300s HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    // The long poll is in flight once its request is read; a request after it on another
    // connection being answered says the server has taken both.
    assert!(get_hello_status(addr).starts_with("HTTP/1.1 200"));

    let asked = Instant::now();
    server.stop().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the stop waited {:?}",
        asked.elapsed()
    );
    read_to_close(&mut events, Duration::from_secs(5));
    let answer =
        String::from_utf8_lossy(&read_to_close(&mut poll, Duration::from_secs(5))).into_owned();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    std::fs::remove_dir_all(folder).ok();
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let rt = Runtime::new().unwrap();
    let app = plait_web::dashboard::Dashboard::builder()
        .body_timeout(Duration::from_millis(300))
        .build();
    let server = start(&rt, app, Limits::default());
    let mut slow = TcpStream::connect(server.local_addr()).unwrap();
    // A head that promises 100 bytes, then 10 of them, then nothing.
    slow.write_all(
        b"POST /api/purge HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"queue\": ",
    )
    .unwrap();
    let mut answer = [0_u8; 512];
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = slow.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
    server.stop().unwrap();
}

fn get_hello_status(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /api/queues HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    String::from_utf8_lossy(&read_to_close(&mut stream, Duration::from_secs(10))).into_owned()
}
