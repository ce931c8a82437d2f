//! The queue under faults, with real `plait worker` processes on each backend (a real
//! SQLite file; a real Redis server, each worker in a folder of its own as on a host of its
//! own), checked as Jepsen's total-queue checker does: every task that was enqueued ran
//! (lost = 0), nothing ran that was not enqueued (unexpected = 0), and the duplicates are
//! counted and bounded by what was in flight when the faults struck.
//!
//! Each task is a command that appends `id attempt worker` to a log before it succeeds.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{folder, signal, stop_in_order};
use plait_queue::{NewTask, Payload, RedisStore, SqliteStore, State, Store, TaskId};

/// Where a test's queue is, and its folder (the log; the SQLite file).
struct Backend {
    dir: PathBuf,
    /// `None`: the folder's embedded file; else the test server, under this namespace.
    redis: Option<String>,
}

impl Backend {
    fn sqlite(name: &str) -> Backend {
        Backend {
            dir: folder(&format!("{name}-sqlite")),
            redis: None,
        }
    }

    fn redis(name: &str) -> Backend {
        Backend {
            dir: folder(&format!("{name}-redis")),
            redis: Some(format!("plait-test-{name}-{}", std::process::id())),
        }
    }

    fn store(&self) -> Box<dyn Store> {
        match &self.redis {
            None => Box::new(SqliteStore::open(self.dir.join(".plait/queue.db")).unwrap()),
            Some(namespace) => Box::new(
                RedisStore::builder(common::redis_url())
                    .namespace(namespace.clone())
                    .build()
                    .unwrap_or_else(|e| panic!("the Redis tests need a server: {e}")),
            ),
        }
    }

    /// A folder for a worker: the test's own (SQLite), or on Redis a fresh one, as a
    /// worker on another host would have.
    fn worker_dir(&self) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if self.redis.is_none() {
            return self.dir.clone();
        }
        let dir = self
            .dir
            .join(format!("host-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(namespace) = &self.redis {
            common::forget_redis_namespace(namespace);
        }
    }
}

/// A task that appends its line to `log`, after `sleep` seconds.
fn logging_task(log: &Path, sleep: &str) -> NewTask {
    let line = format!(
        "sleep {sleep}; echo \"$PLAIT_TASK_ID $PLAIT_ATTEMPT $PLAIT_WORKER\" >> '{}'",
        log.display()
    );
    NewTask::new(Payload::command(["sh", "-c", &line]).encode())
}

fn worker(backend: &Backend, args: &[&str]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plait"));
    command
        .current_dir(backend.worker_dir())
        .arg("worker")
        .args(args)
        .env_remove("PLAIT_QUEUE")
        .env_remove("PLAIT_QUEUE_PATH")
        .env_remove("PLAIT_BROKER");
    if let Some(namespace) = &backend.redis {
        command
            .env("PLAIT_BROKER", common::redis_url())
            .env("PLAIT_NAMESPACE", namespace);
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until no task is waiting or running.
fn until_all_finished(store: &dyn Store, within: Duration) {
    let started = Instant::now();
    loop {
        let stats = store.queues().unwrap();
        let open: u64 = stats
            .iter()
            .map(|q| q.ready + q.scheduled + q.running)
            .sum();
        if open == 0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{open} tasks still open: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log's lines, by task id: the attempts that ran.
fn runs(log: &Path) -> HashMap<TaskId, Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs: HashMap<TaskId, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let (id, rest) = line.split_once(' ').expect("a whole line");
        runs.entry(id.parse().unwrap())
            .or_default()
            .push(rest.to_owned());
    }
    runs
}

/// xorshift64: a fixed sequence of choices, so a failure can be run again.
struct Choices(u64);

impl Choices {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap()
    }
}

#[test]
fn kill_9_of_random_workers_loses_nothing_and_duplicates_only_what_was_in_flight_on_sqlite() {
    kill_9_of_random_workers_loses_nothing_and_duplicates_only_what_was_in_flight(
        &Backend::sqlite("kill9"),
    );
}

#[test]
fn kill_9_of_random_workers_loses_nothing_and_duplicates_only_what_was_in_flight_on_redis() {
    if !common::redis_answers() {
        return;
    }
    kill_9_of_random_workers_loses_nothing_and_duplicates_only_what_was_in_flight(&Backend::redis(
        "kill9",
    ));
}

fn kill_9_of_random_workers_loses_nothing_and_duplicates_only_what_was_in_flight(
    backend: &Backend,
) {
    const TASKS: usize = 10_000;
    const WORKERS: usize = 3;
    const CONCURRENCY: usize = 2;
    let log = backend.dir.join("runs.log");
    let store = backend.store();
    let mut enqueued = HashSet::new();
    for chunk in (0..TASKS).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<NewTask> = chunk.iter().map(|_| logging_task(&log, "0")).collect();
        enqueued.extend(store.enqueue_all(&batch).unwrap().into_iter().map(|e| e.id));
    }
    let args = ["--lease", "2s", "--concurrency", "2", "--grace", "30s"];
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| worker(backend, &args)).collect();
    let mut choices = Choices(0x9e37_79b9_7f4a_7c15);
    let mut kills = 0;
    let chaos = Instant::now();
    while chaos.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(300));
        let victim = choices.below(WORKERS);
        signal(&workers[victim], libc::SIGKILL);
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = worker(backend, &args);
    }
    until_all_finished(&*store, Duration::from_secs(300));
    for worker in workers {
        stop_in_order(worker);
    }
    let runs = runs(&log);
    let logged: HashSet<TaskId> = runs.keys().copied().collect();
    let lost: Vec<_> = enqueued.difference(&logged).collect();
    let unexpected: Vec<_> = logged.difference(&enqueued).collect();
    let duplicates: usize = runs.values().map(|lines| lines.len() - 1).sum();
    eprintln!("{TASKS} tasks, {kills} kills: {duplicates} duplicates");
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(unexpected.is_empty(), "unexpected: {unexpected:?}");
    assert!(
        duplicates <= kills * CONCURRENCY,
        "{duplicates} duplicates from {kills} kills of workers running {CONCURRENCY} each"
    );
    for id in &enqueued {
        assert_eq!(
            store.get(*id).unwrap().unwrap().state,
            State::Succeeded,
            "task {id}"
        );
    }
}

#[test]
fn sigterm_with_tasks_in_flight_loses_none_and_runs_none_twice_on_sqlite() {
    sigterm_with_tasks_in_flight_loses_none_and_runs_none_twice(&Backend::sqlite("drain"));
}

#[test]
fn sigterm_with_tasks_in_flight_loses_none_and_runs_none_twice_on_redis() {
    if !common::redis_answers() {
        return;
    }
    sigterm_with_tasks_in_flight_loses_none_and_runs_none_twice(&Backend::redis("drain"));
}

fn sigterm_with_tasks_in_flight_loses_none_and_runs_none_twice(backend: &Backend) {
    let log = backend.dir.join("runs.log");
    let store = backend.store();
    let batch: Vec<NewTask> = (0..24).map(|_| logging_task(&log, "0.3")).collect();
    let enqueued: HashSet<TaskId> = store
        .enqueue_all(&batch)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let first = worker(backend, &["--concurrency", "4", "--grace", "30s"]);
    // Stop it once some tasks run and some wait.
    let started = Instant::now();
    while store
        .queues()
        .unwrap()
        .first()
        .is_none_or(|q| q.running < 4)
    {
        assert!(started.elapsed() < Duration::from_secs(60), "nothing ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    let said = stop_in_order(first);
    let stats = &store.queues().unwrap()[0];
    assert_eq!(
        stats.running, 0,
        "the drain let every running task finish: {said}"
    );
    assert!(stats.ready > 0, "and took no new ones: {said}");
    let second = worker(backend, &["--concurrency", "4"]);
    until_all_finished(&*store, Duration::from_secs(120));
    stop_in_order(second);
    let runs = runs(&log);
    assert_eq!(
        runs.keys().copied().collect::<HashSet<_>>(),
        enqueued,
        "none lost"
    );
    let twice: Vec<_> = runs.iter().filter(|(_, lines)| lines.len() > 1).collect();
    assert!(twice.is_empty(), "run twice: {twice:?}");
}

#[test]
fn a_worker_paused_past_its_lease_is_refused_when_it_comes_back_on_sqlite() {
    a_worker_paused_past_its_lease_is_refused_when_it_comes_back(&Backend::sqlite("zombie"));
}

#[test]
fn a_worker_paused_past_its_lease_is_refused_when_it_comes_back_on_redis() {
    if !common::redis_answers() {
        return;
    }
    a_worker_paused_past_its_lease_is_refused_when_it_comes_back(&Backend::redis("zombie"));
}

fn a_worker_paused_past_its_lease_is_refused_when_it_comes_back(backend: &Backend) {
    let log = backend.dir.join("runs.log");
    let store = backend.store();
    let id = store.enqueue(&logging_task(&log, "2")).unwrap().id;
    let zombie = worker(backend, &["--lease", "1s", "--concurrency", "1"]);
    let started = Instant::now();
    while store.get(id).unwrap().unwrap().state != State::Running {
        assert!(started.elapsed() < Duration::from_secs(60), "never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Paused: no heartbeats. Its command, in a process group of its own, runs on.
    signal(&zombie, libc::SIGSTOP);
    let rescuer = worker(backend, &["--lease", "1s", "--concurrency", "1"]);
    let task = store.wait_finished(id, Duration::from_secs(60)).unwrap();
    assert_eq!(task.state, State::Succeeded);
    assert_eq!((task.attempts, task.crashes), (2, 1), "{task:?}");
    signal(&zombie, libc::SIGCONT);
    let zombie_said = stop_in_order(zombie);
    stop_in_order(rescuer);
    assert!(
        zombie_said.contains("0 succeeded") && zombie_said.contains("1 refused"),
        "the paused worker's completion is refused: {zombie_said}"
    );
    let after = store.get(id).unwrap().unwrap();
    assert_eq!(
        (after.state, after.attempts),
        (State::Succeeded, 2),
        "no state went back"
    );
    assert_eq!(after.result, task.result, "the rescuer's result stands");
}

#[test]
fn a_command_that_crashes_every_time_is_dead_after_its_crash_budget_and_the_rest_run_on_sqlite() {
    a_command_that_crashes_every_time_is_dead_after_its_crash_budget_and_the_rest_run(
        &Backend::sqlite("poison"),
    );
}

#[test]
fn a_command_that_crashes_every_time_is_dead_after_its_crash_budget_and_the_rest_run_on_redis() {
    if !common::redis_answers() {
        return;
    }
    a_command_that_crashes_every_time_is_dead_after_its_crash_budget_and_the_rest_run(
        &Backend::redis("poison"),
    );
}

fn a_command_that_crashes_every_time_is_dead_after_its_crash_budget_and_the_rest_run(
    backend: &Backend,
) {
    let log = backend.dir.join("runs.log");
    let store = backend.store();
    let poison = store
        .enqueue(&NewTask::new(
            Payload::command(["sh", "-c", "kill -SEGV $$"]).encode(),
        ))
        .unwrap()
        .id;
    let batch: Vec<NewTask> = (0..200).map(|_| logging_task(&log, "0")).collect();
    let healthy: HashSet<TaskId> = store
        .enqueue_all(&batch)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let running = worker(backend, &["--concurrency", "2"]);
    until_all_finished(&*store, Duration::from_secs(120));
    stop_in_order(running);
    let poison = store.get(poison).unwrap().unwrap();
    assert_eq!(
        (poison.state, poison.crashes, poison.attempts),
        (State::Dead, 3, 3)
    );
    assert!(poison.reason.unwrap().contains("signal 11"));
    assert_eq!(runs(&log).keys().copied().collect::<HashSet<_>>(), healthy);
}
