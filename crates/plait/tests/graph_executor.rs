//! The scheduler reaches work only through the `Executor` trait: an executor written outside
//! the crate runs graphs too. Here, one that runs every thread node on the calling thread,
//! at once (as a test double for a remote executor would), over a long chain: finishing
//! inline must not grow the stack per node.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use plait::graph::{Call, Executor, Graph, NodeStatus, Output, Work};
use plait::{CancelHandle, Error, Strand};

/// Runs thread calls inline; refuses everything else, saying why.
#[derive(Default)]
struct Inline {
    executed: AtomicUsize,
}

impl Executor for Inline {
    fn execute(&self, work: Work) -> Option<CancelHandle> {
        self.executed.fetch_add(1, Ordering::Relaxed);
        let (call, mut done) = work.into_parts();
        match call {
            Call::Thread(call) => {
                done.start();
                done.finish(call.run());
            }
            other => done.finish(Output::failed(Error::failed(format!(
                "this executor runs thread nodes only, not {}",
                other.strand()
            )))),
        }
        None
    }

    fn capacity(&self, _: Strand) -> usize {
        1
    }
}

#[test]
fn an_outside_executor_runs_a_long_chain_inline_without_growing_the_stack() {
    let mut graph = Graph::new();
    let mut last = graph.task((), |()| 0u64);
    // Deep enough that one stack frame per node would overflow a test thread's stack.
    for _ in 0..200_000 {
        last = graph.task(last, |n| n + 1);
    }
    let mut results = graph.runner(Inline::default()).start().join();
    assert_eq!(results.take(last).unwrap(), 200_000);
}

#[test]
fn an_outside_executor_can_refuse_work_and_the_node_fails_with_its_reason() {
    let mut graph = Graph::new();
    let on_thread = graph.task((), |()| 1u8);
    let on_coroutine = graph.task_async((), |()| async { 2u8 });
    let results = graph
        .runner(Inline::default())
        .keep_going(true)
        .start()
        .join();
    assert_eq!(results.status(on_thread.id()), NodeStatus::Succeeded);
    let error = results.error(on_coroutine.id()).unwrap().to_string();
    assert!(
        error.contains("thread nodes only, not coroutine"),
        "{error}"
    );
}

/// Swaps the outputs of the first two runs it gets: a broken executor.
#[derive(Default)]
struct Swapper {
    first: Mutex<Option<(plait::graph::Done, Output)>>,
}

impl Executor for Swapper {
    fn execute(&self, work: Work) -> Option<CancelHandle> {
        let (call, done) = work.into_parts();
        let Call::Thread(call) = call else {
            unreachable!("the test graph has thread nodes only")
        };
        let output = call.run();
        let first = self.first.lock().unwrap().take();
        match first {
            None => *self.first.lock().unwrap() = Some((done, output)),
            Some((first_done, first_output)) => {
                first_done.finish(output);
                done.finish(first_output);
            }
        }
        None
    }

    fn capacity(&self, _: Strand) -> usize {
        2
    }
}

#[test]
fn an_output_of_another_node_is_refused() {
    let mut graph = Graph::new();
    let text = graph.task((), |()| "text".to_owned());
    let number = graph.task((), |()| 7u64);
    let results = graph
        .runner(Swapper::default())
        .keep_going(true)
        .start()
        .join();
    for node in [text.id(), number.id()] {
        let error = results.error(node).unwrap().to_string();
        assert!(error.contains("output of another node"), "{error}");
    }
}
