//! Task graphs report each node's life to observers: queued, started, finished or failed
//! (with retries), skipped; with the strand and the run's duration.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plait::Strand;
use plait::graph::{EventKind, Graph, NodeId};

/// What an observer keeps of one event.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Seen {
    Queued,
    Started,
    Finished,
    Failed { retrying: bool },
    Skipped,
}

/// One event as kept: node, kind, strand, name, elapsed.
type Record = (NodeId, Seen, Strand, Option<String>, Duration);

#[test]
fn observers_see_each_node_in_order_with_strand_and_timing() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let sleepy = graph.task_async((), |()| tokio::time::sleep(Duration::from_millis(20)));
    let _ = graph.node(sleepy).name("sleepy");
    let flaky_calls = Arc::new(Mutex::new(0));
    let calls = Arc::clone(&flaky_calls);
    let flaky = graph.try_task(sleepy, move |_| {
        let mut calls = calls.lock().unwrap();
        *calls += 1;
        if *calls == 1 {
            Err("first try fails")
        } else {
            Ok(())
        }
    });
    let _ = graph.node(flaky).retries(1);
    let broken = graph.try_task((), |()| Err::<(), _>("broken"));
    let downstream = graph.task(broken, |_| ());

    let events: Arc<Mutex<Vec<Record>>> = Arc::default();
    let sink = Arc::clone(&events);
    let results = graph
        .runner(rt.clone())
        .keep_going(true)
        .observe(move |event| {
            let (seen, elapsed) = match event.kind {
                EventKind::Queued => (Seen::Queued, Duration::ZERO),
                EventKind::Started => (Seen::Started, Duration::ZERO),
                EventKind::Finished { elapsed, .. } => (Seen::Finished, elapsed),
                EventKind::Failed {
                    retrying, elapsed, ..
                } => (Seen::Failed { retrying }, elapsed),
                EventKind::Skipped { .. } => (Seen::Skipped, Duration::ZERO),
                _ => unreachable!("no other kinds yet"),
            };
            sink.lock().unwrap().push((
                event.node,
                seen,
                event.strand,
                event.name.map(str::to_owned),
                elapsed,
            ));
        })
        .start()
        .join();
    assert_eq!(results.attempts(flaky.id()), 2);

    let events = events.lock().unwrap();
    let of = |node: NodeId| -> Vec<Seen> {
        events
            .iter()
            .filter(|e| e.0 == node)
            .map(|e| e.1.clone())
            .collect()
    };
    use Seen::*;
    assert_eq!(of(sleepy.id()), [Queued, Started, Finished]);
    assert_eq!(
        of(flaky.id()),
        [
            Queued,
            Started,
            Failed { retrying: true },
            Queued,
            Started,
            Finished
        ]
    );
    assert_eq!(
        of(broken.id()),
        [Queued, Started, Failed { retrying: false }]
    );
    assert_eq!(of(downstream.id()), [Skipped]);

    let sleepy_finished = events
        .iter()
        .find(|e| e.0 == sleepy.id() && e.1 == Finished)
        .unwrap();
    assert_eq!(sleepy_finished.2, Strand::Coroutine);
    assert_eq!(sleepy_finished.3.as_deref(), Some("sleepy"));
    assert!(
        sleepy_finished.4 >= Duration::from_millis(20),
        "{:?}",
        sleepy_finished.4
    );
    let flaky_strand = events.iter().find(|e| e.0 == flaky.id()).unwrap().2;
    assert_eq!(flaky_strand, Strand::Thread);
}

#[test]
fn an_observer_may_cancel_the_run_and_a_panicking_one_does_not_stop_it() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    // Fails once the test has handed the canceller to the observer.
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let broken = graph.try_task((), move |()| {
        let _ = gate.lock().unwrap().recv();
        Err::<(), _>("broken")
    });
    let waits: Vec<_> = (0..4)
        .map(|_| graph.task_async((), |()| tokio::time::sleep(Duration::from_secs(30))))
        .collect();
    let canceller: Arc<Mutex<Option<plait::graph::GraphCanceller>>> = Arc::default();
    let slot = Arc::clone(&canceller);
    let run = graph
        .runner(rt.clone())
        .keep_going(true)
        .observe(|_| panic!("an observer that panics on every event"))
        .observe(move |event| {
            // Stop everything at the first failure, from inside the observer.
            if let EventKind::Failed { .. } = event.kind
                && let Some(canceller) = slot.lock().unwrap().as_ref()
            {
                canceller.cancel();
            }
        })
        .start();
    *canceller.lock().unwrap() = Some(run.canceller());
    open.send(()).unwrap();
    let results = run.join();
    assert_eq!(
        results.status(broken.id()),
        plait::graph::NodeStatus::Failed
    );
    for wait in waits {
        assert_eq!(
            results.status(wait.id()),
            plait::graph::NodeStatus::Cancelled
        );
    }
}

#[test]
fn a_finished_event_shows_the_nodes_value() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    let answer = graph.task((), |()| 42_u64);
    let text = graph.task(answer, |n| format!("{n}!"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&seen);
    let _ = graph
        .runner(rt)
        .observe(move |event| {
            if let EventKind::Finished { value, .. } = event.kind {
                let shown = value
                    .downcast_ref::<u64>()
                    .map(u64::to_string)
                    .or_else(|| value.downcast_ref::<String>().cloned());
                keep.lock().unwrap().push((event.node, shown));
            }
        })
        .start()
        .join();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            (answer.id(), Some("42".to_owned())),
            (text.id(), Some("42!".to_owned()))
        ]
    );
}
