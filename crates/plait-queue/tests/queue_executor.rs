//! A task graph run through the queue: its command nodes enqueued as their needs succeed,
//! run by a worker, their outputs handed back as the nodes' results.

mod common;

use std::sync::Arc;

use common::{RedisNamespace, Serving, TempFolder, redis_url};
use plait::graph::Graph;
use plait::process::Command;
use plait_queue::{NewTask, Payload, QueueExecutor, RedisStore, RetryPolicy, State, Store};

plait::test_worker!();

/// Runs in a worker process: its square, and that process's id.
#[plait::task(name = "test.square_where")]
fn square_where(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}

#[test]
fn thread_and_coroutine_nodes_run_here_and_process_and_command_nodes_on_redis_workers() {
    if !common::redis_answers() {
        return;
    }
    let namespace = RedisNamespace::new("executor-mixed");
    let open = || -> Arc<dyn Store> {
        Arc::new(
            RedisStore::builder(redis_url())
                .namespace(namespace.0.clone())
                .build()
                .unwrap_or_else(|e| panic!("the Redis tests need a server: {e}")),
        )
    };
    // The worker has its own connection, as one on another machine would.
    let queue = Serving::start_on(open(), TempFolder::new("executor-mixed"), &["default"]);
    let rt = plait::Runtime::new().unwrap();
    let mut graph = Graph::new();
    let here = std::process::id();
    let seven = graph.task((), |()| (7_u64, std::process::id()));
    let squared = graph.process(seven, square_where::task(), |(n, _)| *n);
    let shown = graph.command(squared, |(square, _)| {
        Command::new("echo").arg(square.to_string())
    });
    let parsed = graph.task_async(shown, |out| async move {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
    });
    let _ = graph.node(seven).keep();
    let _ = graph.node(squared).keep();
    let executor = QueueExecutor::builder(open())
        .local(rt.clone())
        .build()
        .unwrap();
    let mut results = graph.runner(executor).start().join();
    assert_eq!(results.take(parsed).unwrap(), 49);
    let (_, thread_pid) = results.take(seven).unwrap();
    let (square, worker_pid) = results.take(squared).unwrap();
    assert_eq!(square, 49);
    assert_eq!(thread_pid, here, "the thread node ran here");
    assert_ne!(
        worker_pid, here,
        "the process node ran in a worker's process"
    );
    // Two tasks went through the queue: the process node and the command node.
    let stats = queue.store.queues().unwrap();
    assert_eq!(stats[0].succeeded, 2, "{stats:?}");
    let _ = rt.shutdown(std::time::Duration::from_secs(5));
}

#[test]
fn a_process_nodes_result_over_the_stores_limit_fails_the_node_saying_so() {
    let folder = TempFolder::new("executor-big");
    let store: Arc<dyn Store> = Arc::new(
        plait_queue::SqliteStore::builder(folder.path().join("q.db"))
            .result_limit(4)
            .build()
            .unwrap(),
    );
    let queue = Serving::start_on(Arc::clone(&store), folder, &["default"]);
    let mut graph = Graph::new();
    let big = graph.process((), square_where::task(), |()| 1_000_000);
    let executor = QueueExecutor::builder(Arc::clone(&queue.store))
        .build()
        .unwrap();
    let mut results = graph.runner(executor).start().join();
    let error = results.take(big).unwrap_err().to_string();
    assert!(
        error.contains("result limit of 4 bytes") && error.contains("result_limit"),
        "{error}"
    );
}

#[test]
fn command_nodes_run_on_the_queue_in_the_order_their_needs_set() {
    let queue = Serving::start("executor-order", &["default"]);
    let dir = queue.folder.path().to_path_buf();
    let mut graph = Graph::new();
    let first = graph.command((), {
        let dir = dir.clone();
        move |()| Command::shell("echo one >> log; echo made").cwd(dir.clone())
    });
    let second = graph.command(first, {
        let dir = dir.clone();
        move |made| {
            // The need's output, from the worker, makes this node's command.
            let word = String::from_utf8_lossy(&made.stdout).trim().to_owned();
            Command::shell(format!("echo {word} >> log; wc -l < log")).cwd(dir.clone())
        }
    });
    let executor = QueueExecutor::builder(Arc::clone(&queue.store))
        .build()
        .unwrap();
    let mut results = graph.runner(executor).start().join();
    let counted = results.take(second).unwrap();
    assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "2");
    assert_eq!(
        std::fs::read_to_string(dir.join("log")).unwrap(),
        "one\nmade\n"
    );
    let stats = queue.store.queues().unwrap();
    assert_eq!(stats[0].succeeded, 2);
}

#[test]
fn a_failing_node_fails_after_the_queues_retries_and_what_needs_it_is_skipped() {
    let queue = Serving::start("executor-fails", &["default"]);
    let dir = queue.folder.path().to_path_buf();
    let mut graph = Graph::new();
    let bad = graph.command((), {
        let dir = dir.clone();
        move |()| Command::shell("echo try >> tries; echo broken >&2; exit 2").cwd(dir.clone())
    });
    let after = graph.command(bad, |_| Command::new("true"));
    let _ = graph.node(bad).name("bad");
    let executor = QueueExecutor::builder(Arc::clone(&queue.store))
        .prepare(|name, task| {
            assert_eq!(name, Some("bad"), "only the first node is sent");
            task.retry(RetryPolicy {
                max_retries: 1,
                backoff: std::time::Duration::from_millis(1),
                ..RetryPolicy::default()
            })
        })
        .build()
        .unwrap();
    let mut results = graph.runner(executor).start().join();
    let error = results.take(bad).unwrap_err().to_string();
    assert!(
        error.contains("dead") && error.contains("broken"),
        "{error}"
    );
    assert!(results.take(after).is_err());
    assert_eq!(
        std::fs::read_to_string(dir.join("tries")).unwrap(),
        "try\ntry\n",
        "one retry, by the queue"
    );
}

#[test]
fn a_closure_node_is_refused_with_why() {
    let queue = Serving::start("executor-closure", &["default"]);
    let mut graph = Graph::new();
    let closure = graph.task((), |()| 1_u8);
    let executor = QueueExecutor::builder(Arc::clone(&queue.store))
        .build()
        .unwrap();
    let mut results = graph.runner(executor).start().join();
    let error = results.take(closure).unwrap_err().to_string();
    assert!(error.contains("cannot travel to a worker"), "{error}");
    assert!(error.contains("QueueExecutorBuilder::local"), "{error}");
}

#[test]
fn a_keyed_node_takes_up_its_task_and_a_dead_one_is_sent_again() {
    let queue = Serving::start("executor-keys", &["default"]);
    let dir = queue.folder.path().to_path_buf();
    // What an earlier driver sent under the key, and saw die.
    let dead = queue
        .store
        .enqueue(
            &NewTask::new(Payload::command(["false"]).encode())
                .key("job/a")
                .retry(RetryPolicy::never()),
        )
        .unwrap()
        .id;
    let ended = queue
        .store
        .wait_finished(dead, std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(ended.state, State::Dead);

    let run = || {
        let mut graph = Graph::new();
        let node = graph.command((), {
            let dir = dir.clone();
            move |()| Command::shell("echo ran >> runs").cwd(dir.clone())
        });
        let executor = QueueExecutor::builder(Arc::clone(&queue.store))
            .prepare(|_, task| task.key("job/a"))
            .build()
            .unwrap();
        graph.runner(executor).start().join().take(node).unwrap()
    };
    run();
    run();
    assert_eq!(
        std::fs::read_to_string(dir.join("runs")).unwrap(),
        "ran\n",
        "sent again past the dead task, then taken up, not run twice"
    );
}
