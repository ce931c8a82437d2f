//! A worker takes tasks from a real SQLite file and runs them as real processes: commands,
//! and tasks registered in this test binary (run in worker processes).

mod common;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::TempFolder;
use plait_queue::{
    FailureKind, NewTask, Payload, RetryPolicy, SqliteStore, State, Stopper, Store, TaskId,
    TaskInfo, Worker, WorkerReport,
};

plait::test_worker!();

#[plait::task(name = "test.double", version = 2)]
fn double(x: u64) -> u64 {
    x * 2
}

/// The worker process it ran in, once a little time has passed (so that attempts overlap).
#[plait::task(name = "test.pid")]
fn pid_after_a_moment(_: ()) -> u32 {
    std::thread::sleep(Duration::from_millis(20));
    std::process::id()
}

#[plait::task(name = "test.abort")]
fn abort_the_process(_: ()) {
    std::process::abort();
}

#[plait::task(name = "test.panic")]
fn panic_always(_: ()) {
    panic!("this task always panics");
}

/// A store in a folder of its own, and a worker running on it in a thread.
struct Running {
    store: Arc<dyn Store>,
    stopper: Stopper,
    worker: Option<JoinHandle<WorkerReport>>,
    _folder: TempFolder,
}

impl Running {
    fn start(lease: Duration, grace: Duration) -> Running {
        let folder = TempFolder::new("worker");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(folder.path().join("q.db")).unwrap());
        let worker = Worker::builder(Arc::clone(&store))
            .concurrency(2)
            .lease(lease)
            .grace(grace)
            .build()
            .unwrap();
        let stopper = worker.stopper();
        let worker = std::thread::spawn(move || worker.run().unwrap());
        Running {
            store,
            stopper,
            worker: Some(worker),
            _folder: folder,
        }
    }

    fn enqueue(&self, task: NewTask) -> TaskId {
        self.store.enqueue(&task).unwrap().id
    }

    fn finished(&self, id: TaskId) -> TaskInfo {
        let task = self
            .store
            .wait_finished(id, Duration::from_secs(60))
            .unwrap();
        assert!(
            task.state.is_finished(),
            "task {id} did not finish in a minute: {task:?}"
        );
        task
    }

    /// Waits until the task runs (its process has started), for checks that act on a
    /// running task.
    fn running(&self, id: TaskId) {
        let started = Instant::now();
        while self.store.get(id).unwrap().unwrap().state != State::Running {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "task {id} never ran"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn drain(mut self) -> WorkerReport {
        self.stopper.drain();
        self.worker.take().unwrap().join().unwrap()
    }
}

fn command(argv: &[&str]) -> NewTask {
    NewTask::new(Payload::command(argv.iter().copied()).encode())
}

fn no_backoff(max_retries: u32, crash_budget: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        crash_budget,
    }
}

#[test]
fn a_command_and_a_registered_task_run_and_their_results_are_kept() {
    let queue = Running::start(Duration::from_secs(30), Duration::from_secs(5));
    let echo = queue.enqueue(command(&[
        "sh",
        "-c",
        "echo hello $PLAIT_TASK_ID $PLAIT_ATTEMPT",
    ]));
    let task = queue.enqueue(NewTask::new(
        Payload::task("test.double", 2, &21).unwrap().encode(),
    ));
    let echo = queue.finished(echo);
    assert_eq!(echo.state, State::Succeeded, "{echo:?}");
    let result: serde_json::Value = serde_json::from_slice(&echo.result.unwrap()).unwrap();
    assert_eq!(result["stdout"], format!("hello {} 1\n", echo.id));
    assert_eq!(result["code"], 0);
    let task = queue.finished(task);
    assert_eq!(task.state, State::Succeeded, "{task:?}");
    assert_eq!(task.result.as_deref(), Some(&b"42"[..]));
    let report = queue.drain();
    assert_eq!(report.succeeded, 2, "{report:?}");
}

#[test]
fn a_failing_command_is_retried_then_dead_with_its_status_and_stderr() {
    let queue = Running::start(Duration::from_secs(30), Duration::from_secs(5));
    let id = queue.enqueue(
        command(&["sh", "-c", "echo something broke >&2; exit 3"]).retry(no_backoff(1, 3)),
    );
    let task = queue.finished(id);
    assert_eq!(
        (task.state, task.attempts, task.failures),
        (State::Dead, 2, 2)
    );
    let reason = task.reason.unwrap();
    assert!(
        reason.contains("status 3") && reason.contains("something broke"),
        "{reason}"
    );
    queue.drain();
}

#[test]
fn what_no_worker_can_run_is_dead_at_its_first_attempt_and_the_worker_goes_on() {
    let queue = Running::start(Duration::from_secs(30), Duration::from_secs(5));
    let unknown = queue.enqueue(NewTask::new(
        Payload::task("test.nope", 1, &()).unwrap().encode(),
    ));
    let old = queue.enqueue(NewTask::new(
        Payload::task("test.double", 1, &21).unwrap().encode(),
    ));
    let garbage = queue.enqueue(NewTask::new(b"{\"format\":\"plait.task.v7\"}".to_vec()));
    let wrong_args = queue.enqueue(NewTask::new(
        Payload::task("test.double", 2, &"twenty-one")
            .unwrap()
            .encode(),
    ));
    for (id, kind, said) in [
        (
            unknown,
            FailureKind::UnknownTask,
            "no task is registered as \"test.nope\"",
        ),
        (
            old,
            FailureKind::VersionMismatch,
            "version 2 in this worker",
        ),
        (garbage, FailureKind::BadPayload, "plait.task.v7"),
        (wrong_args, FailureKind::BadPayload, "u64"),
    ] {
        let task = queue.finished(id);
        assert_eq!((task.state, task.attempts), (State::Dead, 1), "{task:?}");
        let error = task.error.unwrap();
        assert_eq!(error.kind, kind, "{error}");
        assert!(error.message.contains(said), "{error}");
    }
    let healthy = queue.enqueue(command(&["true"]));
    assert_eq!(queue.finished(healthy).state, State::Succeeded);
    let report = queue.drain();
    assert_eq!((report.rejected, report.succeeded), (4, 1), "{report:?}");
}

#[test]
fn a_task_that_kills_its_process_is_dead_after_its_crash_budget_and_one_that_panics_after_its_retries()
 {
    let queue = Running::start(Duration::from_secs(30), Duration::from_secs(5));
    let crasher = queue.enqueue(
        NewTask::new(Payload::task("test.abort", 1, &()).unwrap().encode()).retry(no_backoff(5, 2)),
    );
    let panicker = queue.enqueue(
        NewTask::new(Payload::task("test.panic", 1, &()).unwrap().encode()).retry(no_backoff(1, 5)),
    );
    let crasher = queue.finished(crasher);
    assert_eq!(
        (crasher.state, crasher.crashes, crasher.failures),
        (State::Dead, 2, 0)
    );
    assert!(crasher.reason.unwrap().contains("crash budget 2"));
    let panicker = queue.finished(panicker);
    assert_eq!(
        (panicker.state, panicker.crashes, panicker.failures),
        (State::Dead, 0, 2)
    );
    assert!(panicker.error.unwrap().message.contains("always panics"));
    queue.drain();
}

#[test]
fn a_time_limit_kills_the_command_and_fails_the_attempt() {
    let queue = Running::start(Duration::from_secs(30), Duration::from_secs(5));
    let id = queue.enqueue(
        command(&["sleep", "30"])
            .time_limit(Duration::from_millis(200))
            .retry(no_backoff(0, 3)),
    );
    let started = Instant::now();
    let task = queue.finished(id);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(task.state, State::Dead);
    assert_eq!(task.error.unwrap().kind, FailureKind::TimedOut);
    queue.drain();
}

#[test]
fn cancelling_a_running_command_stops_it_at_the_next_heartbeat() {
    let queue = Running::start(Duration::from_millis(600), Duration::from_secs(5));
    let id = queue.enqueue(command(&["sleep", "30"]));
    queue.running(id);
    let asked = Instant::now();
    queue.store.cancel(id).unwrap();
    let task = queue.finished(id);
    assert_eq!(task.state, State::Cancelled, "{task:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    let report = queue.drain();
    assert_eq!(report.cancelled, 1, "{report:?}");
}

#[test]
fn a_drain_hands_back_what_outlives_the_grace_uncharged() {
    let queue = Running::start(Duration::from_secs(30), Duration::from_millis(200));
    let id = queue.enqueue(command(&["sleep", "30"]));
    queue.running(id);
    let store = Arc::clone(&queue.store);
    let report = queue.drain();
    assert_eq!(report.released, 1, "{report:?}");
    let task = store.get(id).unwrap().unwrap();
    assert_eq!(
        (task.state, task.attempts, task.failures, task.crashes),
        (State::Queued, 1, 0, 0)
    );
}

#[test]
fn registered_tasks_share_the_worker_processes_they_are_given() {
    let folder = TempFolder::new("worker-processes");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(folder.path().join("q.db")).unwrap());
    let worker = Worker::builder(Arc::clone(&store))
        .concurrency(4)
        .processes(1)
        .build()
        .unwrap();
    let stopper = worker.stopper();
    let running = std::thread::spawn(move || worker.run().unwrap());
    let ids: Vec<TaskId> = (0..8)
        .map(|_| {
            let payload = Payload::task("test.pid", 1, &()).unwrap();
            store.enqueue(&NewTask::new(payload.encode())).unwrap().id
        })
        .collect();
    let mut pids = std::collections::HashSet::new();
    for id in ids {
        let task = store.wait_finished(id, Duration::from_secs(60)).unwrap();
        assert_eq!(task.state, State::Succeeded, "{task:?}");
        pids.insert(String::from_utf8(task.result.unwrap()).unwrap());
    }
    assert_eq!(pids.len(), 1, "one worker process ran them all: {pids:?}");
    assert_ne!(
        pids.into_iter().next().unwrap(),
        std::process::id().to_string(),
        "in a worker process, not here"
    );
    stopper.drain();
    running.join().unwrap();
}
