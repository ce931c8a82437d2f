//! The queue on Redis, end to end: no-op tasks enqueued one by one into a Redis store (a
//! redis-server this suite starts, keeping nothing on disk, as Celery's peer does), run by
//! 1, 2 and 4 worker processes (each this binary started again, a `Worker` with one
//! process-strand process, as a worker on another host would be), every result fetched by
//! id; and the latency from an enqueue to the task's start. The peers: Celery on Redis
//! (`celery_queue.py`), dask.distributed's `client.map` (`dask_map.py`) and Ray's remote
//! tasks (`ray_tasks.py`), each on 2 processes.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plait::Runtime;
use plait::process::ProcessOptions;
use plait_queue::{NewTask, Payload, RedisStore, State, Store, TaskInfo, Worker};

use crate::context::Context;
use crate::report::Row;

/// Attempts a worker process keeps in flight.
const IN_FLIGHT: usize = 16;

/// The worker processes measured.
const WORKERS: [usize; 3] = [1, 2, 4];

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let Some(server) = Server::start() else {
        eprintln!("plait-bench: queue-redis needs redis-server on the PATH; skipped");
        return Vec::new();
    };
    let n = ctx.n(5_000);
    let mut rows = Vec::new();
    for workers in WORKERS {
        let namespace = format!("plait-bench-{}-{workers}", std::process::id());
        let store = RedisStore::builder(server.url())
            .namespace(namespace.clone())
            .build()
            .expect("the suite's redis-server answers");
        let pool = Pool::start(&server.url(), &namespace, workers);
        let system = format!("plait queue, Redis, {workers} worker process(es)");
        let (on, batched) = (&store, n);
        let mut one_by_one = || end_to_end(on, batched, false);
        let mut gathered = || end_to_end(on, batched, true);
        let runs = ctx.measure_interleaved(&mut [&mut one_by_one, &mut gathered]);
        rows.push(
            Row::timed(
                "queue-redis",
                "delay no-op, then get all results",
                &system,
                n,
                &runs[0],
            )
            .note(format!(
                "end-to-end: each enqueue and each result its own round trip; {IN_FLIGHT} \
                 attempts in flight per worker process"
            )),
        );
        rows.push(
            Row::timed(
                "queue-redis",
                "submit all, then gather all results",
                &system,
                n,
                &runs[1],
            )
            .note(
                "end-to-end: enqueue_all in one round trip, wait_all (a thousand results per \
                 round trip), as client.map + gather and ray.get(list) do",
            ),
        );
        if workers == 1 {
            let samples = ctx.n(2_000);
            let mut latencies = super::queue::latencies(&store, samples);
            latencies.sort_unstable();
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
            rows.push(
                Row::timed(
                    "queue-redis",
                    "enqueue to start, one task at a time (p50)",
                    "plait queue, Redis, 1 worker process",
                    1,
                    &[at(0.5)],
                )
                .note(format!(
                    "{samples} samples, p99 {:.0} µs, into a worker's process",
                    at(0.99).as_secs_f64() * 1e6
                )),
            );
        }
        pool.stop();
    }
    rows
}

/// Enqueues `n` no-ops, one by one or in one batch, then waits for each result in turn or
/// gathers them all.
fn end_to_end(store: &RedisStore, n: u64, batched: bool) -> Duration {
    let task = |i: u64| {
        let payload = Payload::task("bench.noop", 1, &i).expect("a u64 is JSON");
        NewTask::new(payload.encode())
    };
    let started = Instant::now();
    let (ids, tasks): (Vec<_>, Vec<TaskInfo>) = if batched {
        let all: Vec<NewTask> = (0..n).map(task).collect();
        let ids: Vec<_> = store
            .enqueue_all(&all)
            .expect("the enqueue is stored")
            .into_iter()
            .map(|e| e.id)
            .collect();
        let tasks = store
            .wait_all(&ids, Duration::from_secs(600))
            .expect("the results are kept");
        (ids, tasks)
    } else {
        let ids: Vec<_> = (0..n)
            .map(|i| store.enqueue(&task(i)).expect("the enqueue is stored").id)
            .collect();
        let tasks = ids
            .iter()
            .map(|&id| {
                store
                    .wait_finished(id, Duration::from_secs(600))
                    .expect("the result is kept")
            })
            .collect();
        (ids, tasks)
    };
    let elapsed = started.elapsed();
    for ((i, id), task) in (1..).zip(ids).zip(tasks) {
        assert_eq!((task.id, task.state), (id, State::Succeeded), "{task:?}");
        assert_eq!(task.result, Some(i.to_string().into_bytes()));
    }
    elapsed
}

/// A redis-server of the suite's own, without persistence, killed on drop.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start() -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Server { port, child })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Worker processes: this binary with `--redis-worker`, each stopped when its input
/// closes.
struct Pool(Vec<Child>);

impl Pool {
    fn start(url: &str, namespace: &str, workers: usize) -> Pool {
        let exe = std::env::current_exe().expect("this binary's path");
        let children = (0..workers)
            .map(|_| {
                Command::new(&exe)
                    .args(["--redis-worker", url, namespace])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("this binary starts again")
            })
            .collect();
        Pool(children)
    }

    fn stop(self) {
        for mut child in self.0 {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// A worker process of the suite: serves `namespace` on `url` until its input closes.
pub(crate) fn worker_main(url: &str, namespace: &str) -> Result<(), String> {
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::builder(url)
            .namespace(namespace)
            .build()
            .map_err(|e| e.to_string())?,
    );
    let rt = Runtime::builder()
        .processes(ProcessOptions::new().workers(1))
        .build()
        .map_err(|e| e.to_string())?;
    rt.start_processes().map_err(|e| e.to_string())?;
    let worker = Worker::builder(store)
        .runtime(rt)
        .concurrency(IN_FLIGHT)
        .build()
        .map_err(|e| e.to_string())?;
    let stopper = worker.stopper();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopper.drain();
    });
    worker.run().map(|_| ()).map_err(|e| e.to_string())
}
