//! The durable queue, end to end: no-op tasks enqueued one by one into the embedded SQLite
//! store, run by a worker on two worker processes, every result fetched by id; and the
//! latency from an enqueue to the task's start in a worker process. The peer is Celery with
//! a Redis broker and result backend, a prefork worker of concurrency 2
//! (`../shared/bench/peers/celery_queue.py`: `.delay` each task, then `.get` each result).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plait::Runtime;
use plait::process::ProcessOptions;
use plait_queue::{Durability, NewTask, Payload, SqliteStore, State, Store, Worker};

use crate::context::Context;
use crate::report::Row;

/// The no-op: what Celery's peer runs (`x + 1`).
#[plait::task(name = "bench.noop")]
fn noop(x: u64) -> u64 {
    x + 1
}

/// Microseconds since the epoch, on this machine's clock.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Returns how long ago (µs) its argument's moment was: run in a worker process, the time
/// from an enqueue to the task's start.
#[plait::task(name = "bench.since")]
fn since(enqueued_us: u64) -> u64 {
    now_us().saturating_sub(enqueued_us)
}

/// The poison: kills the worker process that runs it, every time. (SIGKILL rather than
/// SIGSEGV: a SIGSEGV sent with `kill` is swallowed by the Rust runtime's stack-overflow
/// handler, which only re-raises real faults.)
#[plait::task(name = "bench.crash")]
fn crash() {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
}

/// The poison cases: one poison task among this many healthy ones. The first is the
/// issue's case (a poison task in a stream); the second a crash rate a hundred times
/// higher, to show the cost per crash.
const POISON_EVERY: [u64; 2] = [5_000, 500];

/// Worker processes, as Celery's peer has.
const PROCESSES: usize = 2;
/// Attempts a worker keeps in flight: enough to keep both processes busy between store
/// round trips (Celery's prefork worker prefetches 4 per process).
const IN_FLIGHT: usize = 32;

pub(crate) fn run(ctx: &Context) -> Vec<Row> {
    let n = ctx.n(5_000);
    let mut rows = Vec::new();
    for (durability, label) in [
        (Durability::Process, "default durability"),
        (Durability::Fsync, "durability = fsync"),
    ] {
        let queue = Queue::start(durability);
        let on = &queue;
        let system = format!("plait queue, SQLite ({label}), 1 worker on {PROCESSES} processes");
        let mut cases: Vec<Case<'_>> = vec![(
            "delay no-op, then get all results",
            format!("end-to-end: each enqueue its own transaction, {IN_FLIGHT} attempts in flight"),
            Box::new(|| on.end_to_end(n)),
        )];
        // The poison's cost, measured in turn with the healthy case (A B A B ...).
        if durability == Durability::Process {
            for every in POISON_EVERY {
                cases.push((
                    if every == POISON_EVERY[0] {
                        "delay no-op, then get all results, with poison"
                    } else {
                        "delay no-op, then get all results, with much poison"
                    },
                    format!(
                        "also 1 task in {every} kills its worker process, dead after 3 \
                         crashes; time and n count the healthy tasks"
                    ),
                    Box::new(move || on.end_to_end_with_poison(n, Some(every))),
                ));
            }
        }
        let mut closures: Vec<&mut dyn FnMut() -> Duration> = cases
            .iter_mut()
            .map(|(_, _, case)| &mut **case as _)
            .collect();
        let runs = ctx.measure_interleaved(&mut closures);
        for ((case, note, _), runs) in cases.iter().zip(runs) {
            rows.push(Row::timed("queue", case, &system, n, &runs).note(note.clone()));
        }
        drop(cases);
        let samples = ctx.n(2_000);
        let mut latencies = queue.latencies(samples);
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let p99 = at(0.99);
        rows.push(
            Row::timed(
                "queue",
                "enqueue to start, one task at a time (p50)",
                &format!("plait queue, SQLite ({label})"),
                1,
                &[at(0.5)],
            )
            .note(format!(
                "{samples} samples, p99 {:.0} µs, into a worker process",
                p99.as_secs_f64() * 1e6
            )),
        );
        queue.stop();
    }
    rows
}

/// A timed case: its name, its note, and the run.
type Case<'a> = (&'static str, String, Box<dyn FnMut() -> Duration + 'a>);

/// A store in a temporary folder, with a worker running on it.
struct Queue {
    store: Arc<SqliteStore>,
    stopper: plait_queue::Stopper,
    worker: std::thread::JoinHandle<()>,
    folder: std::path::PathBuf,
}

impl Queue {
    fn start(durability: Durability) -> Queue {
        let folder = std::env::temp_dir().join(format!(
            "plait-bench-queue-{}-{durability:?}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&folder);
        let store = Arc::new(
            SqliteStore::builder(folder.join("queue.db"))
                .durability(durability)
                .build()
                .expect("a temporary folder takes a queue"),
        );
        let rt = Runtime::builder()
            .processes(ProcessOptions::new().workers(PROCESSES))
            .build()
            .expect("a runtime for the worker");
        rt.start_processes()
            .expect("the benchmark binary calls plait::init, so its workers start");
        let worker = Worker::builder(Arc::clone(&store) as Arc<dyn Store>)
            .runtime(rt)
            .concurrency(IN_FLIGHT)
            .build()
            .expect("a worker");
        let stopper = worker.stopper();
        let worker = std::thread::spawn(move || {
            worker.run().expect("the worker runs until stopped");
        });
        Queue {
            store,
            stopper,
            worker,
            folder,
        }
    }

    /// Enqueues `n` no-ops one by one, then waits for each result in turn.
    fn end_to_end(&self, n: u64) -> Duration {
        self.end_to_end_with_poison(n, None)
    }

    /// Enqueues `n` no-ops one by one, with a poison task before every `every`th if
    /// asked; waits for each no-op's result in turn (the time returned), then checks that
    /// each poison task ended dead.
    fn end_to_end_with_poison(&self, n: u64, every: Option<u64>) -> Duration {
        let enqueue = |payload: Payload| {
            self.store
                .enqueue(&NewTask::new(payload.encode()))
                .expect("the enqueue is stored")
                .id
        };
        let started = Instant::now();
        let mut poison = Vec::new();
        let ids: Vec<_> = (0..n)
            .map(|i| {
                if every.is_some_and(|every| i % every == 0) {
                    poison.push(enqueue(Payload::task("bench.crash", 1, &()).expect("JSON")));
                }
                enqueue(Payload::task("bench.noop", 1, &i).expect("a u64 is JSON"))
            })
            .collect();
        for (i, id) in (1..).zip(ids) {
            let task = self
                .store
                .wait_finished(id, Duration::from_secs(600))
                .expect("the result is kept");
            assert_eq!(task.state, State::Succeeded, "{task:?}");
            assert_eq!(task.result, Some(i.to_string().into_bytes()));
        }
        let elapsed = started.elapsed();
        for id in poison {
            let task = self
                .store
                .wait_finished(id, Duration::from_secs(600))
                .expect("the poison task is kept");
            assert_eq!(task.state, State::Dead, "{task:?}");
        }
        elapsed
    }

    fn latencies(&self, samples: u64) -> Vec<Duration> {
        latencies(self.store.as_ref(), samples)
    }

    fn stop(self) {
        self.stopper.drain();
        let _ = self.worker.join();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Enqueues one task at a time, each once the last has finished; how long each took
/// from its enqueue to its start in a worker process.
/// Enqueues one task at a time, each once the last has finished; how long each took from
/// its enqueue to its start in a worker process (`bench.since`, by this machine's clock).
pub(crate) fn latencies(store: &dyn Store, samples: u64) -> Vec<Duration> {
    (0..samples)
        .map(|_| {
            let payload = Payload::task("bench.since", 1, &now_us()).expect("a u64 is JSON");
            let id = store
                .enqueue(&NewTask::new(payload.encode()))
                .expect("the enqueue is stored")
                .id;
            let task = store
                .wait_finished(id, Duration::from_secs(60))
                .expect("the result is kept");
            let micros: u64 = serde_json::from_slice(&task.result.expect("it succeeded"))
                .expect("a number of microseconds");
            Duration::from_micros(micros)
        })
        .collect()
}
