//! Workers on several hosts, one cut off from Redis mid-task: each `plait worker` is a
//! process with a folder of its own, and one reaches the server through a TCP proxy this
//! test controls. Cut off, its lease runs out; another worker finishes the task; when the
//! cut-off worker is let through again, its late completion is refused (fenced).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{folder, forget_redis_namespace, plait_in, redis_url, stop_in_order};
use plait_queue::{NewTask, Payload, RedisStore, State, Store};

/// A TCP proxy to the test server that the test can cut: while cut, its connections are
/// closed and new ones are closed as they come.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut_in, open_in) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut_in.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut open = open_in.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        Proxy { port, cut, open }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0_u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Kills the workers a failing test leaves behind (one that passes stops them in order):
/// a worker cut off from its broker would otherwise go on trying to reach it.
struct KillOnPanic(Vec<u32>);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid in &self.0 {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn worker(dir: &Path, broker: &str, namespace: &str) -> Child {
    plait_in(dir, Some((broker, namespace)))
        .args(["worker", "--lease", "1s", "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_worker_cut_off_from_redis_loses_its_task_to_another_and_its_late_completion_is_refused() {
    if !common::redis_answers() {
        return;
    }
    let namespace = format!("plait-test-partition-{}", std::process::id());
    let base = folder("partition");
    let (host_a, host_b) = (base.join("host-a"), base.join("host-b"));
    std::fs::create_dir_all(&host_a).unwrap();
    std::fs::create_dir_all(&host_b).unwrap();
    let store = RedisStore::builder(redis_url())
        .namespace(namespace.clone())
        .build()
        .unwrap_or_else(|e| panic!("the Redis tests need a server: {e}"));
    let log = base.join("runs.log");
    // Runs 2 s: past the lease of 1 s.
    let line = format!(
        "sleep 2; echo \"$PLAIT_TASK_ID $PLAIT_ATTEMPT $PLAIT_WORKER\" >> '{}'",
        log.display()
    );
    let id = store
        .enqueue(&NewTask::new(
            Payload::command(["sh", "-c", &line]).encode(),
        ))
        .unwrap()
        .id;

    let proxy = Proxy::start();
    let cut_off = worker(&host_a, &proxy.url(), &namespace);
    let mut leftovers = KillOnPanic(vec![cut_off.id()]);
    let started = Instant::now();
    while store.get(id).unwrap().unwrap().state != State::Running {
        assert!(started.elapsed() < Duration::from_secs(60), "never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.cut();
    let rescuer = worker(&host_b, &redis_url(), &namespace);
    leftovers.0.push(rescuer.id());
    let task = store.wait_finished(id, Duration::from_secs(60)).unwrap();
    assert_eq!(task.state, State::Succeeded);
    assert_eq!((task.attempts, task.crashes), (2, 1), "{task:?}");
    let lost = task.error.as_ref().map(|e| e.message.clone()).unwrap();
    assert!(lost.contains("stopped renewing its lease"), "{lost}");

    // Its command, in a process group of its own, ends too; its worker holds the result
    // until the server can be reached again, then is refused.
    let runs = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while runs().lines().count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", runs());
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.mend();
    let rescuer_said = stop_in_order(rescuer);
    // Stopping, it still reports what it holds: the refusal comes back now.
    let cut_off_said = stop_in_order(cut_off);
    assert!(
        cut_off_said.contains("0 succeeded") && cut_off_said.contains("1 refused"),
        "the cut-off worker's completion is refused: {cut_off_said}"
    );
    assert!(rescuer_said.contains("1 succeeded"), "{rescuer_said}");
    let after = store.get(id).unwrap().unwrap();
    assert_eq!(
        (after.state, after.attempts, after.result),
        (State::Succeeded, 2, task.result),
        "no state went back, and the rescuer's result stands"
    );
    forget_redis_namespace(&namespace);
}
