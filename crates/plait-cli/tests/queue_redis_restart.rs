//! Redis killed with kill -9 under load and started again: a redis-server of the test's
//! own, with `appendonly yes` and `appendfsync always` (so a write is on disk before its
//! reply: an acknowledged enqueue is a durable one). Nothing acknowledged is lost, and
//! the workers, which never stop trying, take up the work again within seconds.

mod common;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::folder;
use plait_queue::{NewTask, Payload, RedisStore, State, Store, TaskId};

/// A redis-server of this test's own, keeping its append-only file in `dir`.
struct Server {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        // A port that was free a moment ago.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Server {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the Redis tests need it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let started = Instant::now();
        while client
            .get_connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn worker(dir: &Path, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_plait"))
        .current_dir(dir)
        .args(["worker", "--lease", "2s", "--concurrency", "2"])
        .env("PLAIT_BROKER", url)
        .env_remove("PLAIT_NAMESPACE")
        .env_remove("PLAIT_QUEUE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn redis_killed_under_load_and_restarted_loses_no_acknowledged_enqueue_and_workers_resume() {
    if !common::program_here("redis-server") {
        return;
    }
    const TASKS: usize = 600;
    let dir = folder("redis-restart");
    let data = dir.join("redis");
    std::fs::create_dir_all(&data).unwrap();
    let mut server = Server::start(&data);
    let url = server.url();
    let log = dir.join("runs.log");
    let workers: Vec<Child> = (0..2)
        .map(|n| {
            let host = dir.join(format!("host-{n}"));
            std::fs::create_dir_all(&host).unwrap();
            worker(&host, &url)
        })
        .collect();

    // Enqueues with keys, so that one retried after an unanswered try is not stored
    // twice; an id is acknowledged when an enqueue returns it.
    let acknowledged: Arc<Mutex<Vec<TaskId>>> = Arc::default();
    let enqueuer = {
        let (acknowledged, url, log) = (Arc::clone(&acknowledged), url.clone(), log.clone());
        std::thread::spawn(move || {
            let mut store: Option<RedisStore> = None;
            for n in 0..TASKS {
                let line = format!(
                    "echo \"$PLAIT_TASK_ID $PLAIT_ATTEMPT\" >> '{}'",
                    log.display()
                );
                let task = NewTask::new(Payload::command(["sh", "-c", &line]).encode())
                    .key(format!("k{n}"));
                loop {
                    if store.is_none() {
                        store = RedisStore::open(&url).ok();
                    }
                    match store.as_ref().map(|s| s.enqueue(&task)) {
                        Some(Ok(enqueued)) => {
                            acknowledged.lock().unwrap().push(enqueued.id);
                            break;
                        }
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < TASKS / 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    let restarted = Instant::now();
    let store = RedisStore::open(&url).unwrap();
    // The workers take up the work again within seconds of the restart.
    let succeeded =
        |store: &RedisStore| -> u64 { store.queues().unwrap().iter().map(|q| q.succeeded).sum() };
    let before = succeeded(&store);
    while succeeded(&store) == before {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "no task finished within 10 s of the restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let resumed = restarted.elapsed();
    enqueuer.join().unwrap();

    let acknowledged: Vec<TaskId> = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), TASKS);
    for id in &acknowledged {
        let task = store
            .wait_finished(*id, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("acknowledged task {id}: {e}"));
        assert_eq!(
            task.state,
            State::Succeeded,
            "acknowledged task {id}: {task:?}"
        );
    }
    let ran: HashSet<TaskId> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| line.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let lost: Vec<&TaskId> = acknowledged.iter().filter(|id| !ran.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged and never run: {lost:?}");
    let all_done = restarted.elapsed();
    eprintln!(
        "restart: work resumed {resumed:?} after it, all {TASKS} acknowledged tasks done \
         {all_done:?} after it"
    );
    assert!(
        all_done < Duration::from_secs(60),
        "the workers took {all_done:?} to finish after the restart"
    );
    for mut worker in workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
}
