//! Task graphs: tasks on any strand whose results feed each other, run by a scheduler that
//! costs well under a microsecond per node (250-580 ns on no-op graphs of a million nodes
//! here; see BENCHMARKS.md).
//!
//! Build a [`Graph`] node by node: each node names the nodes it takes its inputs from
//! ([`Deps`]) and what runs once they have succeeded: a closure on the thread strand
//! ([`task`](Graph::task)), an async closure on the coroutine strand
//! ([`task_async`](Graph::task_async)), a registered task in a worker process
//! ([`process`](Graph::process)) or a command ([`command`](Graph::command)). A node can only
//! name nodes added before it, so a graph has no cycles by construction. Then run it:
//! [`Runtime::run_graph`](crate::Runtime::run_graph), or [`Graph::runner`] for options.
//!
//! The scheduler:
//! * starts a node once all its inputs have succeeded, longest remaining chain first (the
//!   critical path, as `dask.order` does), keeping each strand's executor window full;
//! * releases each result as soon as its last consumer has run, so memory follows the
//!   graph's frontier, not its size (sinks and nodes marked [`keep`](NodeMut::keep) stay);
//! * on a failure, skips what needs the failed node and, by default, cancels the rest
//!   (fail-fast); with [`keep_going`](Runner::keep_going) runs everything not downstream of
//!   the failure;
//! * retries a node that fails ([`retries`](NodeMut::retries)) and bounds its time
//!   ([`timeout`](NodeMut::timeout));
//! * reports each node's life ([`Event`]: queued, started, finished, failed, skipped) to
//!   observers ([`Runner::observe`]);
//! * reaches the strands only through an [`Executor`], so that another executor (one that
//!   sends work to other machines) can plug in without changing it.
//!
//! # Examples
//!
//! ```
//! use plait::graph::Graph;
//!
//! let rt = plait::Runtime::new()?;
//! let mut graph = Graph::new();
//! let words = graph.task((), |()| vec!["a", "graph", "of", "tasks"]);
//! let count = graph.task(words, |words| words.len());
//! let longest = graph.task(words, |words| words.iter().map(|w| w.len()).max().unwrap_or(0));
//! let summary = graph.task_async((count, longest), |(count, longest)| async move {
//!     format!("{count} words, the longest {longest} letters")
//! });
//!
//! let mut results = rt.run_graph(graph).join();
//! assert_eq!(results.take(summary)?, "4 words, the longest 5 letters");
//! # Ok::<(), plait::Error>(())
//! ```

mod after;
mod commands;
mod deps;
mod event;
mod executor;
mod local;
mod meta;
mod results;
mod run;
mod scheduler;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

pub use deps::Deps;
pub use event::{Event, EventKind};
pub use executor::{
    Call, CommandCall, CommandFailed, CoroutineCall, Done, Executor, Output, ProcessCall,
    ThreadCall, Work,
};
pub use results::{NodeStatus, Results};
pub use run::{GraphCanceller, GraphRun, Runner};

use crate::process::{Command, CommandOutput, Task};
use crate::{BoxError, Error, Result, Strand};
use deps::Value;

/// A graph of tasks, built node by node; run it with
/// [`Runtime::run_graph`](crate::Runtime::run_graph) or [`Graph::runner`].
///
/// Every node's body is a `Fn`, not an `FnOnce`: a node with [retries](NodeMut::retries)
/// runs again after a failure. A body is dropped as soon as its node has finished.
///
/// # Examples
///
/// A diamond: two nodes that need the same input, and one that needs both. A node names its
/// inputs (a node, a tuple of nodes, or none) and receives their results by reference.
///
/// ```
/// use plait::graph::Graph;
///
/// let rt = plait::Runtime::new()?;
/// let mut graph = Graph::new();
/// let numbers = graph.task((), |()| (1..=10u64).collect::<Vec<_>>());
/// let sum = graph.task(numbers, |n: &Vec<u64>| n.iter().sum::<u64>());
/// // An async node receives its inputs in `Arc`s, which live across `.await`s.
/// let squares = graph.task_async(numbers, |n| async move {
///     n.iter().map(|x| x * x).sum::<u64>()
/// });
/// let report = graph.task((sum, squares), |(s, q): (&u64, &u64)| format!("{s} {q}"));
///
/// let mut results = rt.run_graph(graph).join();
/// assert_eq!(results.take(report)?, "55 385");
/// # Ok::<(), plait::Error>(())
/// ```
pub struct Graph {
    /// Tells this graph's nodes from other graphs'.
    pub(crate) id: u64,
    pub(crate) specs: Vec<Spec>,
    /// The inputs of every node, back to back: node `i`'s are
    /// `inputs[starts[i]..starts[i + 1]]` (the last node's run to the end).
    pub(crate) inputs: Vec<u32>,
    pub(crate) starts: Vec<u32>,
}

/// One node as built: what it runs, and its options if it has any.
pub(crate) struct Spec {
    pub(crate) body: Body,
    pub(crate) options: Option<Box<NodeOptions>>,
}

impl Spec {
    /// The strand whose window the node counts against and whose name its events carry:
    /// its body's, except for a thread node placed on [`Strand::Coroutine`] without a time
    /// limit, which runs on that strand's blocking-I/O threads (see [`NodeMut::strand`]).
    pub(crate) fn strand(&self) -> Strand {
        match (&self.body, self.options.as_deref()) {
            (Body::Thread(..), Some(options))
                if options.placement == Strand::Coroutine && options.timeout.is_none() =>
            {
                Strand::Coroutine
            }
            (body, _) => body.strand(),
        }
    }
}

/// A thread node's body: its inputs' results in, its own out.
pub(crate) type ThreadBody = Arc<dyn Fn(&[Value]) -> Result<Value> + Send + Sync>;
/// The identity and name of a thread node's closure type, for [`Strand::Auto`]'s routes.
pub(crate) type ClosureKey = fn() -> (std::any::TypeId, &'static str);
/// A coroutine node's body: makes the future from the inputs' results.
pub(crate) type CoroutineBody =
    Arc<dyn Fn(&[Value]) -> BoxFuture<'static, Result<Value>> + Send + Sync>;
/// A process node's arguments, encoded, from the inputs' results.
pub(crate) type ArgsBody =
    Arc<dyn Fn(&[Value]) -> Result<crate::process::EncodedArgs> + Send + Sync>;
/// A command node's command, from the inputs' results.
pub(crate) type CommandBody = Arc<dyn Fn(&[Value]) -> Command + Send + Sync>;
/// Decodes a worker's answer for the task named.
pub(crate) type Decode = fn(&[u8], &'static str) -> Result<Value>;

/// What a node runs, with the inputs' types erased.
#[derive(Clone)]
pub(crate) enum Body {
    Thread(ThreadBody, ClosureKey),
    Coroutine(CoroutineBody),
    Process {
        task: &'static str,
        args: ArgsBody,
        decode: Decode,
    },
    Command(CommandBody),
}

impl Body {
    pub(crate) fn strand(&self) -> Strand {
        match self {
            Body::Thread(..) => Strand::Thread,
            Body::Coroutine(_) => Strand::Coroutine,
            Body::Process { .. } | Body::Command(_) => Strand::Process,
        }
    }
}

/// A node's options; most nodes have none, and pay one pointer for that.
#[derive(Clone, Debug)]
pub(crate) struct NodeOptions {
    pub(crate) name: Option<String>,
    pub(crate) retries: u32,
    /// The wait before the first retry; see [`NodeMut::retry_delay`].
    pub(crate) retry_delay: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) weight: u32,
    pub(crate) keep: bool,
    /// Where a thread node's closure runs: the thread strand, the coroutine strand's
    /// blocking-I/O threads, or `Auto`.
    pub(crate) placement: Strand,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            name: None,
            retries: 0,
            retry_delay: None,
            timeout: None,
            weight: 1,
            keep: false,
            placement: Strand::Thread,
        }
    }
}

/// The identity of a node in its graph, without its result type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The node's position in its graph: 0 for the first node added.
    #[must_use]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node #{}", self.0)
    }
}

/// A node whose body returns `T`: pass it to later nodes as an input, and to
/// [`Results::take`] for its result. Cheap to copy.
pub struct Node<T> {
    pub(crate) id: NodeId,
    pub(crate) graph: u64,
    _result: PhantomData<fn() -> T>,
}

impl<T> Node<T> {
    /// The node's identity, as events and [`Results`] name it.
    #[must_use]
    pub fn id(self) -> NodeId {
        self.id
    }
}

impl<T> Clone for Node<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Node<T> {}

impl<T> fmt::Debug for Node<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Node").field(&self.id.0).finish()
    }
}

/// Sets a node's options; from [`Graph::node`].
#[derive(Debug)]
#[must_use = "NodeMut sets options through its methods"]
pub struct NodeMut<'g> {
    options: &'g mut NodeOptions,
}

impl NodeMut<'_> {
    /// Names the node, for events, errors and [`Results`] (default: `node #INDEX`).
    pub fn name(self, name: impl Into<String>) -> Self {
        self.options.name = Some(name.into());
        self
    }

    /// Runs the node up to `retries` more times after a failure (a panic, an error, a time
    /// limit); a cancellation is never retried. Default 0.
    pub fn retries(self, retries: u32) -> Self {
        self.options.retries = retries;
        self
    }

    /// Waits before each retry: `delay` before the first, up to twice as long before each
    /// next (at most 64 times `delay`), less a part of up to half that is the same for the
    /// same node and attempt (equal jitter, as the queue's retries), so that nodes that
    /// failed together do not retry in lockstep. The node waits outside its strand's
    /// window; a run stopped meanwhile cancels it. Default: no wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut graph = plait::graph::Graph::new();
    /// let fetch = graph.task_async((), |()| async { "page" });
    /// let _ = graph.node(fetch).retries(3).retry_delay(Duration::from_millis(100));
    /// ```
    pub fn retry_delay(self, delay: Duration) -> Self {
        self.options.retry_delay = Some(delay);
        self
    }

    /// Limits each run of the node, as [`TaskBuilder::timeout`](crate::TaskBuilder::timeout)
    /// does on its strand: a coroutine is dropped, a worker process killed, a command's
    /// process group killed, and a thread task asked to stop. The node then fails with
    /// [`Error::TimedOut`] (and is retried if it has retries left).
    pub fn timeout(self, limit: Duration) -> Self {
        self.options.timeout = Some(limit);
        self
    }

    /// How much of its strand's window the node takes while it runs (default 1): a
    /// command that uses four cores can say so. A weight over the window's size takes the
    /// whole window.
    pub fn weight(self, weight: u32) -> Self {
        self.options.weight = weight.max(1);
        self
    }

    /// Where a thread node's closure (from [`task`](Graph::task) or
    /// [`try_task`](Graph::try_task)) runs: [`Strand::Thread`] (the default), the coroutine
    /// strand's threads for blocking I/O ([`Strand::Coroutine`]: for a closure that waits),
    /// or [`Strand::Auto`], which measures the closure's first runs and routes the rest
    /// (see [`Runtime::spawn_on`](crate::Runtime::spawn_on)); each routing is told to
    /// observers as [`EventKind::Routed`], with its reason. [`Strand::Process`] fails the
    /// node: a closure cannot cross into another process (use [`process`](Graph::process)).
    /// Other nodes keep their strand. A time limit keeps a closure on the thread strand.
    ///
    /// A closure placed on [`Strand::Coroutine`] takes its place in that strand's window
    /// (see [`Runner::limit`](crate::graph::Runner::limit)), so many waits can run at once; its
    /// events name that strand. One placed on [`Strand::Auto`] takes a place in the thread
    /// strand's window wherever it is routed: that keeps a burst of closures not yet
    /// measured from flooding the blocking-I/O threads, but it also caps closures found to
    /// wait at the thread window; place those on [`Strand::Coroutine`] once known.
    pub fn strand(self, strand: Strand) -> Self {
        self.options.placement = strand;
        self
    }

    /// Keeps the node's result until the end of the run, for [`Results::take`], even though
    /// later nodes consume it. Sinks (nodes nothing consumes) are always kept.
    pub fn keep(self) -> Self {
        self.options.keep = true;
        self
    }
}

impl Graph {
    /// An empty graph.
    #[must_use]
    pub fn new() -> Self {
        Graph::with_capacity(0)
    }

    /// An empty graph with room for `nodes` nodes and as many edges.
    #[must_use]
    pub fn with_capacity(nodes: usize) -> Self {
        static GRAPHS: AtomicU64 = AtomicU64::new(0);
        Graph {
            id: GRAPHS.fetch_add(1, Ordering::Relaxed),
            specs: Vec::with_capacity(nodes),
            inputs: Vec::with_capacity(nodes),
            starts: Vec::with_capacity(nodes),
        }
    }

    /// The number of nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the graph has no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Adds a node that runs `f` on the thread strand once `deps` have succeeded, with
    /// their results.
    ///
    /// # Panics
    ///
    /// If one of `deps` is a node of another graph, or the graph already holds `u32::MAX`
    /// nodes or edges.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let mut graph = plait::graph::Graph::new();
    /// let squares: Vec<_> = (1..=4u64).map(|i| graph.task((), move |()| i * i)).collect();
    /// let sum = graph.task(squares, |squares| squares.into_iter().sum::<u64>());
    /// assert_eq!(rt.run_graph(graph).join().take(sum)?, 30);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn task<D, R, F>(&mut self, deps: D, f: F) -> Node<R>
    where
        D: Deps,
        F: for<'a> Fn(D::Refs<'a>) -> R + Send + Sync + 'static,
        R: Send + Sync + 'static,
    {
        let body = move |values: &[Value]| Ok(Arc::new(f(D::refs(values))) as Value);
        self.push(&deps, Body::Thread(Arc::new(body), key_of::<F>))
    }

    /// Adds a node that runs `f` on the thread strand and fails if `f` returns an error
    /// (which the node's error then wraps, as [`Error::Failed`]).
    ///
    /// # Panics
    ///
    /// As [`task`](Graph::task).
    pub fn try_task<D, R, E, F>(&mut self, deps: D, f: F) -> Node<R>
    where
        D: Deps,
        F: for<'a> Fn(D::Refs<'a>) -> std::result::Result<R, E> + Send + Sync + 'static,
        R: Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let body = move |values: &[Value]| match f(D::refs(values)) {
            Ok(value) => Ok(Arc::new(value) as Value),
            Err(error) => Err(Error::failed(error)),
        };
        self.push(&deps, Body::Thread(Arc::new(body), key_of::<F>))
    }

    /// Adds a node that runs the future `f` makes on the coroutine strand once `deps` have
    /// succeeded. `f` receives the inputs' results in `Arc`s, which live across `.await`s.
    ///
    /// # Panics
    ///
    /// As [`task`](Graph::task).
    pub fn task_async<D, R, F, Fut>(&mut self, deps: D, f: F) -> Node<R>
    where
        D: Deps,
        F: Fn(D::Owned) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Send + Sync + 'static,
    {
        let body = move |values: &[Value]| {
            f(D::owned(values))
                .map(|value| Ok(Arc::new(value) as Value))
                .boxed()
        };
        self.push(&deps, Body::Coroutine(Arc::new(body)))
    }

    /// Adds a node that runs the future `f` makes on the coroutine strand and fails if the
    /// future's output is an error.
    ///
    /// # Panics
    ///
    /// As [`task`](Graph::task).
    pub fn try_task_async<D, R, E, F, Fut>(&mut self, deps: D, f: F) -> Node<R>
    where
        D: Deps,
        F: Fn(D::Owned) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
        R: Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let body = move |values: &[Value]| {
            f(D::owned(values))
                .map(|output| match output {
                    Ok(value) => Ok(Arc::new(value) as Value),
                    Err(error) => Err(Error::failed(error)),
                })
                .boxed()
        };
        self.push(&deps, Body::Coroutine(Arc::new(body)))
    }

    /// Adds a node that runs the registered `task` (see [`#[plait::task]`](macro@crate::task)) in
    /// a worker process, with the arguments `args` makes from the inputs' results. The
    /// worker's crashes, memory limit and hard time limits apply as for
    /// [`Runtime::spawn_process`](crate::Runtime::spawn_process).
    ///
    /// # Panics
    ///
    /// As [`task`](Graph::task).
    pub fn process<D, T, F>(&mut self, deps: D, _task: T, args: F) -> Node<T::Output>
    where
        D: Deps,
        T: Task,
        T::Output: Sync,
        F: for<'a> Fn(D::Refs<'a>) -> T::Args + Send + Sync + 'static,
    {
        let encode = move |values: &[Value]| {
            crate::process::EncodedArgs::encode(&args(D::refs(values))).map_err(|error| {
                Error::Codec {
                    task: T::NAME.to_owned(),
                    reason: format!("cannot encode the arguments: {error}"),
                }
            })
        };
        self.push(
            &deps,
            Body::Process {
                task: T::NAME,
                args: Arc::new(encode),
                decode: decode::<T::Output>,
            },
        )
    }

    /// Adds a node that runs the command `command` makes from the inputs' results, in a
    /// process group of its own (see [`Runtime::spawn_command`](crate::Runtime::spawn_command)).
    /// The node fails if the command cannot start, exits with a status other than 0, is
    /// killed by a signal or runs past its time limit; the error names the command and ends
    /// with its standard error.
    ///
    /// On the runtime's executor, a running command node holds a thread of its own, which
    /// waits on the command's output and end (so the process strand's window, see
    /// [`Runner::limit`](crate::graph::Runner::limit), bounds the threads too); a command
    /// that its predecessor's end makes ready runs next on the same thread. It counts on
    /// the process strand: a [`shutdown`](crate::Runtime::shutdown) waits for it, then
    /// kills it.
    ///
    /// # Panics
    ///
    /// As [`task`](Graph::task).
    pub fn command<D, F>(&mut self, deps: D, command: F) -> Node<CommandOutput>
    where
        D: Deps,
        F: for<'a> Fn(D::Refs<'a>) -> Command + Send + Sync + 'static,
    {
        let body = move |values: &[Value]| command(D::refs(values));
        self.push(&deps, Body::Command(Arc::new(body)))
    }

    /// Sets the options of `node`: name, retries, time limit, weight, keep.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut graph = plait::graph::Graph::new();
    /// let fetch = graph.task_async((), |()| async { "page" });
    /// let _ = graph.node(fetch).name("fetch").retries(3).timeout(Duration::from_secs(10));
    /// ```
    ///
    /// # Panics
    ///
    /// If `node` belongs to another graph.
    pub fn node<T>(&mut self, node: Node<T>) -> NodeMut<'_> {
        assert_eq!(node.graph, self.id, "a node of another graph");
        let options = self.specs[node.id.index()]
            .options
            .get_or_insert_with(Box::default);
        NodeMut { options }
    }

    /// Sets a time limit on the node `node` names, as [`NodeMut::timeout`]; for code that
    /// holds nodes of several result types by [`NodeId`]. Returns `false` if the graph has
    /// no such node.
    pub fn set_timeout(&mut self, node: NodeId, limit: Duration) -> bool {
        match self.specs.get_mut(node.index()) {
            Some(spec) => {
                spec.options.get_or_insert_with(Box::default).timeout = Some(limit);
                true
            }
            None => false,
        }
    }

    /// The name given to `node`, if any.
    #[must_use]
    pub fn name(&self, node: NodeId) -> Option<&str> {
        self.specs
            .get(node.index())?
            .options
            .as_ref()?
            .name
            .as_deref()
    }

    fn push<R>(&mut self, deps: &impl Deps, body: Body) -> Node<R> {
        let id = u32::try_from(self.specs.len())
            .ok()
            .filter(|&id| id < u32::MAX)
            .expect("a graph holds fewer than u32::MAX nodes");
        let start = u32::try_from(self.inputs.len()).expect("a graph holds fewer than 2^32 edges");
        if !deps.ids(self.id, &mut self.inputs) {
            self.inputs.truncate(start as usize);
            panic!("a node's inputs must be nodes of the same graph");
        }
        self.starts.push(start);
        self.specs.push(Spec {
            body,
            options: None,
        });
        Node {
            id: NodeId(id),
            graph: self.id,
            _result: PhantomData,
        }
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.specs.len())
            .field("edges", &self.inputs.len())
            .finish()
    }
}

/// Decodes a worker's answer as `T`, the registered task's output.
fn decode<T>(bytes: &[u8], task: &'static str) -> Result<Value>
where
    T: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    postcard::from_bytes::<T>(bytes)
        .map(|value| Arc::new(value) as Value)
        .map_err(|error| Error::Codec {
            task: task.to_owned(),
            reason: format!("cannot decode the result: {error}"),
        })
}

/// The closure type `F`'s identity and name.
fn key_of<F: 'static>() -> (std::any::TypeId, &'static str) {
    (std::any::TypeId::of::<F>(), std::any::type_name::<F>())
}

/// The scheduler's per-thread loop, suspended while code that is not part of it runs;
/// resumed when dropped.
///
/// A thread that hands work to executors keeps the work that inline finishes make ready
/// for its outer loop (a trampoline), and one that finishes a thread node keeps a
/// successor for itself (the inline slot). Code that runs meanwhile (a node's body, an
/// observer, a task helped along while a spawn waits for room) may start another graph and
/// wait for it: that graph's work must not wait in turn for the loop this code interrupted.
pub(crate) struct SuspendedLoop {
    hand_over: after::SuspendedHandOver,
    inline: local::inline::SuspendedInline,
}

pub(crate) fn suspend_loop() -> SuspendedLoop {
    SuspendedLoop {
        hand_over: after::suspend_hand_over(),
        inline: local::inline::suspend_inline(),
    }
}

impl SuspendedLoop {
    /// Whether nothing was suspended (no loop was running on this thread).
    fn is_empty(&self) -> bool {
        self.hand_over.is_empty() && self.inline.is_empty()
    }
}

thread_local! {
    /// The loops that tasks running on this thread suspended, innermost last (see
    /// `suspend_hook`).
    static SUSPENDED: std::cell::RefCell<Vec<SuspendedLoop>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The hook through which the task core suspends this module's loop while a task runs
/// (the task core sits below graphs and cannot name them).
pub(crate) fn suspend_hook() -> crate::task::current::SuspendHook {
    fn suspend() -> bool {
        let suspended = suspend_loop();
        if suspended.is_empty() {
            return false;
        }
        SUSPENDED.with(|all| all.borrow_mut().push(suspended));
        true
    }
    fn resume() {
        // Dropped outside the borrow: resuming may hand work over, which comes back here.
        let suspended = SUSPENDED.with(|all| all.borrow_mut().pop());
        drop(suspended);
    }
    crate::task::current::SuspendHook { suspend, resume }
}

/// Runs user code that may panic, turning the panic into the node's error.
pub(crate) fn catch<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _suspended = suspend_loop();
    panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(Error::from_panic(payload)))
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new()
    }
}
