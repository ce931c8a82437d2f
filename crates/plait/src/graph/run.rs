//! Starting a graph ([`Runner`]), and the running graph ([`GraphRun`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Graph;
use super::event::{Event, Observer};
use super::executor::Executor;
use super::results::Results;
use super::scheduler::Shared;
use crate::task::wait;
use crate::{Runtime, Strand};

/// Options for running a graph; from [`Graph::runner`]. Ends in [`start`](Runner::start).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use plait::graph::{EventKind, Graph, NodeStatus};
///
/// let rt = plait::Runtime::new()?;
/// let mut graph = Graph::new();
/// let bad = graph.try_task((), |()| "x".parse::<u32>());
/// let after_bad = graph.task(bad, |n| n + 1);
/// let good = graph.task((), |()| 7);
///
/// let finished = Arc::new(AtomicUsize::new(0));
/// let seen = Arc::clone(&finished);
/// let results = graph
///     .runner(rt.clone())
///     .keep_going(true)
///     .observe(move |event| {
///         if let EventKind::Finished { .. } = event.kind {
///             seen.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .start()
///     .join();
/// assert_eq!(results.status(bad.id()), NodeStatus::Failed);
/// assert_eq!(results.status(after_bad.id()), NodeStatus::Skipped);
/// assert_eq!(results.get(good)?, &7);
/// assert_eq!(finished.load(Ordering::Relaxed), 1);
/// # Ok::<(), plait::Error>(())
/// ```
#[must_use = "a Runner does nothing until start"]
pub struct Runner {
    graph: Graph,
    executor: Arc<dyn Executor>,
    keep_going: bool,
    observers: Vec<Observer>,
    limits: [Option<usize>; 3],
}

impl Graph {
    /// Starts the options for running this graph on `executor` (a [`Runtime`], most often).
    pub fn runner(self, executor: impl Executor) -> Runner {
        Runner {
            graph: self,
            executor: Arc::new(executor),
            keep_going: false,
            observers: Vec::new(),
            limits: [None; 3],
        }
    }
}

impl Runner {
    /// After a failure, run every node that does not need the failed one (default `false`:
    /// fail fast, cancelling the rest). Either way, the nodes that need the failed one are
    /// skipped, with [`Error::Upstream`](crate::Error::Upstream) as their reason.
    pub fn keep_going(mut self, keep_going: bool) -> Self {
        self.keep_going = keep_going;
        self
    }

    /// Calls `observer` with every [`Event`] of the run, never under the scheduler's lock.
    /// Keep it short (count, record, send on a channel): a batch's work is handed over only
    /// once its events are told, so a slow observer holds the run up.
    pub fn observe(mut self, observer: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.observers.push(Box::new(observer));
        self
    }

    /// Runs at most `units` units of work (see [`NodeMut::weight`](super::NodeMut::weight))
    /// on `strand` at once, rather than what the executor offers; at least 1.
    pub fn limit(mut self, strand: Strand, units: usize) -> Self {
        self.limits[strand.index()] = Some(units);
        self
    }

    /// Starts the run: the nodes that need nothing are handed to the executor now.
    pub fn start(self) -> GraphRun {
        // Before any work is handed over: a task that runs inside a hand-over suspends it.
        crate::task::current::install_suspend_hook(super::suspend_hook());
        let shared = Shared::new(
            self.graph,
            self.executor,
            self.observers,
            self.keep_going,
            self.limits,
        );
        shared.start();
        GraphRun {
            shared,
            returned: false,
        }
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("graph", &self.graph)
            .field("keep_going", &self.keep_going)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Runs `graph` on this runtime's strands, failing fast; see [`graph`](crate::graph)
    /// and, for options, [`Graph::runner`].
    pub fn run_graph(&self, graph: Graph) -> GraphRun {
        graph.runner(self.clone()).start()
    }
}

/// A graph that runs; [`join`](GraphRun::join) it or `.await` it for its [`Results`].
///
/// Dropping a `GraphRun` does not stop the run: it goes on to its end and its results are
/// dropped. [`cancel`](GraphRun::cancel) stops it.
#[must_use = "a dropped GraphRun runs on, unobserved; join it, await it or cancel it"]
pub struct GraphRun {
    shared: Arc<Shared>,
    /// The results were handed out (a poll returned `Ready`).
    returned: bool,
}

impl GraphRun {
    /// Stops the run: nodes not started never start, running coroutines, worker processes
    /// and commands are stopped, running thread tasks are asked to stop (see
    /// [`task::is_cancelled`](crate::task::is_cancelled)). Stopped nodes report
    /// [`Error::Cancelled`](crate::Error::Cancelled).
    pub fn cancel(&self) {
        self.shared.cancel();
    }

    /// A handle that cancels the run from elsewhere (a signal handler, another thread).
    #[must_use]
    pub fn canceller(&self) -> GraphCanceller {
        GraphCanceller {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether every node has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.shared.is_complete()
    }

    /// Waits for the run to end and returns its results.
    ///
    /// Safe to call on a thread of the thread strand (a spare thread takes its place
    /// while it waits)
    /// and inside a coroutine (the worker's other tasks move to another thread first; still,
    /// prefer `.await` there).
    pub fn join(self) -> Results {
        let shared = Arc::clone(&self.shared);
        wait::blocking_region(|| wait::block_on_tasks(self, None))
            .unwrap_or_else(|| Results::new(&shared))
    }
}

/// # Panics
///
/// Polled again after it returned the results.
impl Future for GraphRun {
    type Output = Results;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Results> {
        assert!(
            !self.returned,
            "a GraphRun polled after it returned its results"
        );
        if self.shared.register(cx.waker()) {
            self.returned = true;
            Poll::Ready(Results::new(&self.shared))
        } else {
            Poll::Pending
        }
    }
}

impl fmt::Debug for GraphRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphRun")
            .field("nodes", &self.shared.len())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Cancels a graph run; from [`GraphRun::canceller`]. Cheap to clone.
#[derive(Clone)]
pub struct GraphCanceller {
    shared: Arc<Shared>,
}

impl GraphCanceller {
    /// As [`GraphRun::cancel`].
    pub fn cancel(&self) {
        self.shared.cancel();
    }
}

impl fmt::Debug for GraphCanceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphCanceller").finish_non_exhaustive()
    }
}
