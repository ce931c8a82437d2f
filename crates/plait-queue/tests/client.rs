//! The typed client, as a Celery user would use it: `delay`, `apply_async`'s options,
//! `AsyncResult.get` and `revoke`, against a real SQLite file and a worker running the
//! tasks in worker processes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Serving, TempFolder};
use plait_queue::{
    Cancel, Client, CommandResult, FailureKind, ResultError, RetryPolicy, SqliteStore, State,
    Store, SubmitError,
};

plait::test_worker!();

#[plait::task(name = "client.add")]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[plait::task(name = "client.fail")]
fn fail(_: ()) -> u8 {
    panic!("fails every time");
}

/// A client and a worker on one store.
struct Queue {
    client: Client,
    _serving: Serving,
}

impl Queue {
    fn start() -> Queue {
        let serving = Serving::start("client", &["default", "math"]);
        Queue {
            client: Client::new(Arc::clone(&serving.store)),
            _serving: serving,
        }
    }
}

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn delay_then_get_returns_the_typed_result() {
    let queue = Queue::start();
    let sums: Vec<_> = (0..20)
        .map(|i| queue.client.delay(add::task(), (i, 100)).unwrap())
        .collect();
    for (i, sum) in (0..).zip(sums) {
        assert_eq!(sum.get(WAIT).unwrap(), i + 100);
    }
}

#[test]
fn apply_async_options_reach_the_store() {
    let queue = Queue::start();
    let later = queue
        .client
        .submit(add::task(), (1, 2))
        .queue("math")
        .priority(7)
        .countdown(Duration::from_secs(3600))
        .send()
        .unwrap();
    let info = later.info().unwrap();
    assert_eq!(
        (info.queue.as_str(), info.priority, info.state),
        ("math", 7, State::Queued)
    );
    assert!(info.ready_at >= info.enqueued_at + 3_599_000, "{info:?}");
    // revoke(): it never runs.
    assert_eq!(later.cancel().unwrap(), Cancel::Cancelled);
    assert!(matches!(
        later.get(WAIT),
        Err(ResultError::Cancelled { .. })
    ));
}

#[test]
fn the_same_key_returns_the_first_tasks_handle() {
    let queue = Queue::start();
    let first = queue
        .client
        .submit(add::task(), (1, 1))
        .key("once")
        .send()
        .unwrap();
    let second = queue
        .client
        .submit(add::task(), (5, 5))
        .key("once")
        .send()
        .unwrap();
    assert_eq!(first.id(), second.id());
    assert_eq!(second.get(WAIT).unwrap(), 2);
}

#[test]
fn a_task_that_always_fails_ends_dead_with_its_last_error() {
    let queue = Queue::start();
    let failing = queue
        .client
        .submit(fail::task(), ())
        .retry(RetryPolicy::never())
        .send()
        .unwrap();
    match failing.get(WAIT) {
        Err(ResultError::Dead { error, .. }) => {
            let error = error.expect("it ran, so it has a last error");
            assert_eq!(error.kind, FailureKind::Panicked, "{error:?}");
            assert!(error.message.contains("fails every time"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_result_handle_made_from_an_id_reads_the_result() {
    let queue = Queue::start();
    let id = queue.client.delay(add::task(), (20, 22)).unwrap().id();
    assert_eq!(queue.client.result::<i64>(id).get(WAIT).unwrap(), 42);
    // Read as another type: a clear error, not a panic.
    assert!(matches!(
        queue.client.result::<String>(id).get(WAIT),
        Err(ResultError::Undecodable { .. })
    ));
}

#[test]
fn a_command_reports_its_output() {
    let queue = Queue::start();
    let echo = queue.client.command(["echo", "hello"]).send().unwrap();
    let result: CommandResult = echo.get(WAIT).unwrap();
    assert_eq!((result.code, result.stdout.as_str()), (Some(0), "hello\n"));
}

#[test]
fn get_times_out_on_a_task_that_waits_and_leaves_it_waiting() {
    let folder = TempFolder::new("client-no-worker");
    let client = Client::new(Arc::new(
        SqliteStore::open(folder.path().join("q.db")).unwrap(),
    ));
    let sum = client.delay(add::task(), (1, 2)).unwrap();
    match sum.get(Duration::from_millis(20)) {
        Err(ResultError::NotReady { state, .. }) => assert_eq!(state, State::Queued),
        other => panic!("{other:?}"),
    }
    assert_eq!(sum.info().unwrap().state, State::Queued);
}

#[test]
fn bad_input_is_refused_with_nothing_stored() {
    let folder = TempFolder::new("client-bad-input");
    let store = Arc::new(SqliteStore::open(folder.path().join("q.db")).unwrap());
    let client = Client::new(Arc::clone(&store) as Arc<dyn Store>);
    let refused = client
        .submit(add::task(), (1, 2))
        .queue("no spaces")
        .send()
        .unwrap_err();
    assert!(
        matches!(refused, SubmitError::Store(ref error) if error.to_string().contains("no spaces")),
        "{refused}"
    );
    assert!(
        store
            .queues()
            .unwrap()
            .iter()
            .all(|q| q.queue != "no spaces")
    );
}
