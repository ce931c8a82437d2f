//! Task graphs under failure: fail-fast stops the rest, keep-going runs what does not need
//! the failure, retries and time limits per node, cancelling a whole run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plait::Error;
use plait::graph::{Graph, NodeStatus};
use plait::process::{Command, ProcessOptions};

plait::test_worker!();

#[plait::task]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn fail_fast_cancels_running_and_waiting_nodes() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let slow_started = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&slow_started);
    // A long wait that must be cut short by the failure.
    let slow = graph.task_async((), move |()| {
        notify.notify_one();
        tokio::time::sleep(Duration::from_secs(30))
    });
    let ran_after_slow = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran_after_slow);
    let after_slow = graph.task(slow, move |_| flag.store(true, Ordering::SeqCst));
    let failing = graph.try_task_async((), move |()| {
        let slow_started = Arc::clone(&slow_started);
        async move {
            // Fail only once the slow node runs, so that it is cancelled while running.
            slow_started.notified().await;
            Err::<(), _>("disk full")
        }
    });
    let after_failing = graph.task(failing, |()| ());

    let began = Instant::now();
    let results = rt.run_graph(graph).join();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "the wait was cancelled"
    );
    assert_eq!(results.status(failing.id()), NodeStatus::Failed);
    assert_eq!(results.status(slow.id()), NodeStatus::Cancelled);
    // Needs the cancelled node, not the failed one: cancelled too.
    assert_eq!(results.status(after_slow.id()), NodeStatus::Cancelled);
    // Needs the failed one: skipped, with the failure as the reason.
    assert_eq!(results.status(after_failing.id()), NodeStatus::Skipped);
    let why = results.error(after_failing.id()).unwrap();
    assert!(matches!(why, Error::Upstream { .. }), "{why}");
    assert!(!ran_after_slow.load(Ordering::SeqCst));
    let error = results.check().unwrap_err();
    assert!(error.to_string().contains("disk full"), "{error}");
}

#[test]
fn keep_going_runs_everything_not_downstream_of_a_failure() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let bad = graph.task((), |()| -> u32 { panic!("bad input") });
    let _ = graph.node(bad).name("parse");
    let child = graph.task(bad, |n| n + 1);
    let grandchild = graph.task((child, bad), |(a, b)| a + b);
    let good = graph.task((), |()| 1u32);
    let after_good = graph.task(good, |n| n + 1);

    let mut results = graph.runner(rt.clone()).keep_going(true).start().join();
    assert_eq!(results.status(bad.id()), NodeStatus::Failed);
    assert!(results.error(bad.id()).unwrap().is_panic());
    for skipped in [child.id(), grandchild.id()] {
        assert_eq!(results.status(skipped), NodeStatus::Skipped);
    }
    let error = results.take(grandchild).unwrap_err();
    assert!(matches!(error, Error::Upstream { .. }));
    assert!(error.to_string().contains("parse"), "{error}");
    assert_eq!(results.take(after_good).unwrap(), 2);
    assert_eq!(
        results.failures().count(),
        1,
        "only the root cause is a failure"
    );
}

#[test]
fn retries_run_a_failing_node_again() {
    let rt = common::runtime(2);
    let calls = Arc::new(AtomicU32::new(0));
    let mut graph = Graph::new();
    let counter = Arc::clone(&calls);
    let flaky = graph.try_task((), move |()| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Err("not yet")
        } else {
            Ok("done")
        }
    });
    let _ = graph.node(flaky).retries(2);
    let mut results = rt.run_graph(graph).join();
    assert_eq!(results.take(flaky).unwrap(), "done");
    assert_eq!(results.attempts(flaky.id()), 3);

    let mut graph = Graph::new();
    let hopeless = graph.try_task((), |()| Err::<(), _>("never"));
    let _ = graph.node(hopeless).retries(1);
    let results = rt.run_graph(graph).join();
    assert_eq!(results.status(hopeless.id()), NodeStatus::Failed);
    assert_eq!(results.attempts(hopeless.id()), 2);
}

#[test]
fn time_limits_apply_on_every_strand() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    let mut graph = Graph::new();
    let limit = Duration::from_millis(100);
    let coroutine = graph.task_async((), |()| tokio::time::sleep(Duration::from_secs(30)));
    let thread = graph.task((), |()| {
        // Cooperative: a thread task sees the limit through is_cancelled.
        while !plait::task::is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let process = graph.process((), sleep_ms::task(), |()| 30_000);
    let command = graph.command((), |()| Command::shell("sleep 30"));
    for node in [coroutine.id(), thread.id(), process.id(), command.id()] {
        let _ = graph_node_timeout(&mut graph, node, limit);
    }
    let began = Instant::now();
    let results = graph.runner(rt.clone()).keep_going(true).start().join();
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    for node in [coroutine.id(), thread.id(), process.id()] {
        assert!(
            results.error(node).unwrap().is_timeout(),
            "{node}: {:?}",
            results.error(node)
        );
    }
    let command_error = results.error(command.id()).unwrap().to_string();
    assert!(command_error.contains("time limit"), "{command_error}");
}

/// Sets a time limit on a node known only by id (the test's nodes have different types).
fn graph_node_timeout(graph: &mut Graph, node: plait::graph::NodeId, limit: Duration) -> bool {
    graph.set_timeout(node, limit)
}

#[test]
fn a_command_that_fails_or_cannot_start_fails_its_node_only() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let exits = graph.command((), |()| Command::shell("echo oops >&2; exit 3"));
    let missing = graph.command((), |()| Command::new("plait-no-such-program"));
    let fine = graph.command((), |()| Command::shell("true"));
    let results = graph.runner(rt.clone()).keep_going(true).start().join();
    let error = results.error(exits.id()).unwrap().to_string();
    assert!(
        error.contains("exited with status 3") && error.contains("oops"),
        "{error}"
    );
    let error = results.error(missing.id()).unwrap().to_string();
    assert!(error.contains("plait-no-such-program"), "{error}");
    assert_eq!(results.status(fine.id()), NodeStatus::Succeeded);
}

#[test]
fn cancelling_a_run_stops_it_and_reports_every_node() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let started = Arc::new(AtomicUsize::new(0));
    let mut waits = Vec::new();
    for _ in 0..4 {
        let started = Arc::clone(&started);
        waits.push(graph.task_async((), move |()| {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(30))
        }));
    }
    let spinning = graph.task((), |()| {
        while !plait::task::is_cancelled() {
            std::hint::spin_loop();
        }
    });
    let after = graph.task(waits.clone(), |_| ());
    let run = rt.run_graph(graph);
    while started.load(Ordering::SeqCst) < 4 {
        std::thread::yield_now();
    }
    let canceller = run.canceller();
    canceller.cancel();
    let results = run.join();
    for node in waits.iter().map(|n| n.id()).chain([after.id()]) {
        assert_eq!(results.status(node), NodeStatus::Cancelled);
    }
    // The spinning thread node saw the cancellation and returned; what it returned is
    // discarded.
    assert_eq!(results.status(spinning.id()), NodeStatus::Cancelled);
    assert!(results.check().unwrap_err().is_cancelled());
    // A canceller used after the run ended (a late signal) does nothing.
    canceller.cancel();
    assert_eq!(results.status(after.id()), NodeStatus::Cancelled);
}

#[test]
fn a_node_that_times_out_is_retried_and_can_then_succeed() {
    let rt = common::runtime(2);
    let tries = Arc::new(AtomicU32::new(0));
    let mut graph = Graph::new();
    let counter = Arc::clone(&tries);
    let slow_then_quick = graph.task_async((), move |()| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            "quick"
        }
    });
    let _ = graph
        .node(slow_then_quick)
        .timeout(Duration::from_millis(50))
        .retries(1);
    let began = Instant::now();
    let mut results = rt.run_graph(graph).join();
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(results.take(slow_then_quick).unwrap(), "quick");
    assert_eq!(results.attempts(slow_then_quick.id()), 2);
}

/// A result whose destructor panics.
struct Explosive;

impl Drop for Explosive {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a result that panics when dropped");
        }
    }
}

#[test]
fn a_result_that_panics_when_released_does_not_keep_the_run_from_ending() {
    let rt = common::runtime(2);
    let after = common::within_a_minute("the run ends", move || {
        let mut graph = Graph::new();
        let explosive = graph.task((), |()| Explosive);
        // Released once this has run: dropped by the scheduler, outside its lock.
        let after = graph.task(explosive, |_| 7u8);
        rt.run_graph(graph).join().take(after)
    });
    assert_eq!(after.unwrap(), 7);
}

#[test]
fn work_handed_over_after_the_run_stopped_does_not_start() {
    let rt = common::runtime(2);
    let dir = std::env::temp_dir().join(format!("plait-stopped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("started");
    let _ = std::fs::remove_file(&marker);
    let canceller = Arc::new(std::sync::OnceLock::<plait::graph::GraphCanceller>::new());
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let mut graph = Graph::new();
    // The gate holds until the canceller is known.
    let opened = graph.task((), move |()| gate.lock().unwrap().recv().unwrap());
    let touched = marker.to_string_lossy().into_owned();
    let built = Arc::new(AtomicBool::new(false));
    let building = Arc::clone(&built);
    let command = graph.command(opened, move |()| {
        building.store(true, Ordering::SeqCst);
        Command::new("touch").arg(&touched)
    });
    let stop = Arc::clone(&canceller);
    let run = graph
        .runner(rt.clone())
        .observe(move |event| {
            // Told after the command was made ready and before it is handed over.
            if event.node == command.id() && matches!(event.kind, plait::graph::EventKind::Queued) {
                stop.get().expect("set before the gate opens").cancel();
            }
        })
        .start();
    canceller.set(run.canceller()).unwrap();
    release.send(()).unwrap();
    let results = run.join();
    assert_eq!(
        results.status(command.id()),
        NodeStatus::Cancelled,
        "{results:?}"
    );
    assert!(
        !built.load(Ordering::SeqCst),
        "its command was not even built"
    );
    assert!(!marker.exists(), "the command never started");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn retries_wait_their_backoff_and_a_cancel_ends_the_wait() {
    use plait::graph::EventKind;
    use std::sync::Mutex;

    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let flaky = graph.try_task((), move |()| {
        let mut calls = counted.lock().unwrap();
        *calls += 1;
        if *calls < 3 {
            Err("not yet")
        } else {
            Ok(*calls)
        }
    });
    let delay = Duration::from_millis(100);
    let _ = graph.node(flaky).retries(2).retry_delay(delay);
    let times = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&times);
    let mut results = graph
        .runner(rt.clone())
        .observe(move |event| {
            let what = match event.kind {
                EventKind::Started => "started",
                EventKind::Failed { .. } => "failed",
                _ => return,
            };
            keep.lock().unwrap().push((what, event.at));
        })
        .start()
        .join();
    assert_eq!(results.take(flaky).unwrap(), 3);
    let times = times.lock().unwrap().clone();
    let kinds: Vec<_> = times.iter().map(|(what, _)| *what).collect();
    assert_eq!(kinds, ["started", "failed", "started", "failed", "started"]);
    // At least half of the backoff each time (its jitter takes off up to half): 50 ms,
    // then 100 ms.
    assert!(times[2].1 - times[1].1 >= delay / 2, "{times:?}");
    assert!(times[4].1 - times[3].1 >= delay, "{times:?}");

    // A run cancelled while a node waits to retry ends without waiting out the backoff.
    let mut graph = Graph::new();
    let failing = graph.try_task((), |()| -> Result<(), &str> { Err("always") });
    let _ = graph
        .node(failing)
        .retries(5)
        .retry_delay(Duration::from_secs(600));
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let run = graph
        .runner(rt)
        .observe(move |event| {
            if let EventKind::Failed { .. } = event.kind {
                let _ = tx.lock().unwrap().send(());
            }
        })
        .start();
    rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let asked = Instant::now();
    run.cancel();
    let mut results = run.join();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(results.take(failing).unwrap_err().is_cancelled());
}
