//! [`Executor`]: how the scheduler reaches the strands, and what it hands over.
//!
//! The scheduler decides *when* a node runs; an executor decides *where*. The runtime is
//! the local executor; one that sends work to other machines implements the same trait.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::deps::Value;
use super::scheduler::Shared;
use super::{ArgsBody, ClosureKey, CommandBody, CoroutineBody, Decode, NodeId, ThreadBody, catch};
use crate::process::{Command, CommandOutput};
use crate::{CancelHandle, Error, Result, Strand};

/// Runs the nodes a graph's scheduler hands it.
///
/// The scheduler calls [`execute`](Executor::execute) without holding its lock, from
/// whichever thread finished the node that made the new one ready; `execute` should start
/// the work and return at once.
///
/// # Examples
///
/// An executor that runs thread nodes on the calling thread, at once, and refuses the rest
/// with its reason (the node fails with it; nothing is lost):
///
/// ```
/// use plait::graph::{Call, Executor, Graph, Output, Work};
/// use plait::{CancelHandle, Error, Strand};
///
/// struct Inline;
///
/// impl Executor for Inline {
///     fn execute(&self, work: Work) -> Option<CancelHandle> {
///         let (call, mut done) = work.into_parts();
///         match call {
///             Call::Thread(call) => {
///                 done.start();
///                 done.finish(call.run());
///             }
///             other => done.finish(Output::failed(Error::failed(format!(
///                 "this executor runs thread nodes only, not {}",
///                 other.strand()
///             )))),
///         }
///         None
///     }
///
///     fn capacity(&self, _: Strand) -> usize {
///         1
///     }
/// }
///
/// let mut graph = Graph::new();
/// let one = graph.task((), |()| 1u32);
/// let two = graph.task(one, |n| n + 1);
/// let mut results = graph.runner(Inline).start().join();
/// assert_eq!(results.take(two)?, 2);
/// # Ok::<(), plait::Error>(())
/// ```
pub trait Executor: Send + Sync + 'static {
    /// Starts `work`. Its [`Done`] must be finished exactly once, when the work has ended
    /// (dropping it unfinished fails the node, so nothing is lost). Returns a handle that
    /// cancels the work, if the work can be cancelled.
    fn execute(&self, work: Work) -> Option<CancelHandle>;

    /// How many units of work (see [`NodeMut::weight`](super::NodeMut::weight)) on
    /// `strand` may be in flight at once. Nodes wait in the scheduler, in priority order,
    /// beyond that. A thread node placed on [`Strand::Coroutine`] counts against that
    /// strand (see [`NodeMut::strand`](super::NodeMut::strand)).
    fn capacity(&self, strand: Strand) -> usize;
}

/// One run of one node, from the scheduler to an [`Executor`].
#[must_use = "work must be run, or its Done finished"]
pub struct Work {
    pub(crate) node: NodeId,
    pub(crate) attempt: u32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) placement: Strand,
    pub(crate) call: Call,
    pub(crate) done: Done,
}

impl Work {
    /// The node.
    #[must_use]
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Which run of the node this is, from 1.
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The node's name, if it has one.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.done.shared.meta.name(self.node)
    }

    /// The strand the node asks for.
    #[must_use]
    pub fn strand(&self) -> Strand {
        self.call.strand()
    }

    /// Where the node asks its closure to run, for a thread call: [`Strand::Thread`],
    /// [`Strand::Coroutine`] (threads for blocking I/O) or [`Strand::Auto`] (see
    /// [`NodeMut::strand`](super::NodeMut::strand)).
    #[must_use]
    pub fn placement(&self) -> Strand {
        self.placement
    }

    /// The node's time limit per run, if it has one.
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// What to run, and where to report its end.
    pub fn into_parts(self) -> (Call, Done) {
        (self.call, self.done)
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Work")
            .field("node", &self.node)
            .field("attempt", &self.attempt)
            .field("strand", &self.strand())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a node runs, by strand.
#[derive(Debug)]
#[non_exhaustive]
pub enum Call {
    /// A closure for the thread strand.
    Thread(ThreadCall),
    /// A future for the coroutine strand.
    Coroutine(CoroutineCall),
    /// A registered task for a worker process: a name and encoded arguments, which can
    /// travel to another machine.
    Process(ProcessCall),
    /// A command line, which can travel too.
    Command(CommandCall),
}

impl Call {
    /// The strand this call is for.
    #[must_use]
    pub fn strand(&self) -> Strand {
        match self {
            Call::Thread(_) => Strand::Thread,
            Call::Coroutine(_) => Strand::Coroutine,
            Call::Process(_) | Call::Command(_) => Strand::Process,
        }
    }
}

/// How one run of a node ended, for [`Done::finish`]. Only the calls make successful
/// outputs, each marked with its node, and [`Done::finish`] refuses another node's: a
/// result always has the type its node promises.
pub struct Output {
    pub(crate) result: Result<Value>,
    /// The node whose call made this output (none for a failure).
    pub(crate) origin: Option<Origin>,
}

/// The node a call is for: its graph and its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) graph: u64,
    pub(crate) node: u32,
}

impl Output {
    /// A failed run.
    #[must_use]
    pub fn failed(error: Error) -> Self {
        Output {
            result: Err(error),
            origin: None,
        }
    }

    fn of(origin: Origin, result: Result<Value>) -> Self {
        Output {
            result,
            origin: Some(origin),
        }
    }

    /// The error, if the run failed.
    #[must_use]
    pub fn error(&self) -> Option<&Error> {
        self.result.as_ref().err()
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(_) => f.write_str("Output(Ok(..))"),
            Err(error) => f.debug_tuple("Output").field(error).finish(),
        }
    }
}

/// A closure and its inputs, to run on the current thread.
pub struct ThreadCall {
    pub(crate) body: ThreadBody,
    pub(crate) inputs: Vec<Value>,
    pub(crate) origin: Origin,
    pub(crate) key: ClosureKey,
}

impl ThreadCall {
    /// Runs the closure here; a panic becomes the output's error. The inputs are let go
    /// before this returns.
    pub fn run(self) -> Output {
        let ThreadCall {
            body,
            inputs,
            origin,
            key: _,
        } = self;
        let output = catch(|| body(&inputs));
        drop(inputs);
        Output::of(origin, output)
    }
}

impl fmt::Debug for ThreadCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadCall")
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

/// An async closure and its inputs.
pub struct CoroutineCall {
    pub(crate) body: CoroutineBody,
    pub(crate) inputs: Vec<Value>,
    pub(crate) origin: Origin,
}

impl CoroutineCall {
    /// Makes the future; a panic, in making or polling it, becomes the output's error.
    pub fn into_future(self) -> BoxFuture<'static, Output> {
        let CoroutineCall {
            body,
            inputs,
            origin,
        } = self;
        let future = catch(|| Ok(body(&inputs)));
        drop(inputs);
        async move {
            let result = match future {
                Ok(future) => std::panic::AssertUnwindSafe(future)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|payload| Err(Error::from_panic(payload))),
                Err(error) => Err(error),
            };
            Output::of(origin, result)
        }
        .boxed()
    }
}

impl fmt::Debug for CoroutineCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoroutineCall")
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

/// A registered task to run in a worker process.
pub struct ProcessCall {
    pub(crate) task: &'static str,
    pub(crate) args: ArgsBody,
    pub(crate) decode: Decode,
    pub(crate) inputs: Option<Vec<Value>>,
    pub(crate) origin: Origin,
}

impl ProcessCall {
    /// The task's registered name.
    #[must_use]
    pub fn task(&self) -> &'static str {
        self.task
    }

    /// Makes the task's arguments from the inputs and encodes them, as
    /// [`Runtime::spawn_process_by_name`](crate::Runtime::spawn_process_by_name) takes them.
    /// Lets go of the inputs.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the arguments do not encode; [`Error::Panicked`] if making them
    /// panicked; [`Error::Failed`] if called twice.
    pub fn encode_args(&mut self) -> Result<crate::process::EncodedArgs> {
        let inputs = self.inputs.take().ok_or_else(called_twice)?;
        let args = catch(|| (self.args)(&inputs));
        drop(inputs);
        args
    }

    /// The output for the worker's answer: the encoded result, or the error the process
    /// strand reported.
    #[must_use]
    pub fn output(&self, answer: Result<Vec<u8>>) -> Output {
        Output::of(
            self.origin,
            answer.and_then(|bytes| (self.decode)(&bytes, self.task)),
        )
    }
}

impl fmt::Debug for ProcessCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessCall")
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

/// A command to run.
pub struct CommandCall {
    pub(crate) body: CommandBody,
    pub(crate) inputs: Option<Vec<Value>>,
    pub(crate) shown: String,
    pub(crate) origin: Origin,
}

impl CommandCall {
    /// Makes the command from the inputs. Lets go of the inputs.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] if making it panicked; [`Error::Failed`] if called twice.
    pub fn command(&mut self) -> Result<Command> {
        let inputs = self.inputs.take().ok_or_else(called_twice)?;
        let command = catch(|| Ok((self.body)(&inputs)))?;
        self.shown = shown(&command);
        Ok(command)
    }

    /// The output for the command's end: success only if it exited with status 0 in
    /// time; otherwise an error that names the command, says how it ended and ends with
    /// its standard error.
    #[must_use]
    pub fn output(&self, ended: Result<CommandOutput>) -> Output {
        let result = ended.and_then(|output| {
            if output.success() {
                Ok(Arc::new(output) as Value)
            } else {
                Err(Error::failed(CommandFailed::new(&self.shown, output)))
            }
        });
        Output::of(self.origin, result)
    }
}

impl fmt::Debug for CommandCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandCall")
            .field("command", &self.shown)
            .finish_non_exhaustive()
    }
}

fn called_twice() -> Error {
    Error::failed("a call's inputs were taken already: make its arguments once")
}

/// A command as people read it: the shell line, or the argv joined.
fn shown(command: &Command) -> String {
    match command.argv.as_slice() {
        [sh, flag, line] if sh == "sh" && flag == "-c" => line.clone(),
        argv => argv.join(" "),
    }
}

/// Why a command node failed although its command ran: it exited with a status other
/// than 0, was killed by a signal, or ran past its time limit. The node's
/// [`Error::Failed`] holds it, with the whole output: downcast the inner error to find it.
///
/// # Examples
///
/// ```
/// use plait::graph::{CommandFailed, Graph};
/// use plait::process::Command;
///
/// let rt = plait::Runtime::new()?;
/// let mut graph = Graph::new();
/// let says = graph.command((), |()| Command::shell("echo partial; exit 3"));
/// let mut results = graph.runner(rt).start().join();
/// let Err(plait::Error::Failed(inner)) = results.take(says) else { panic!("it fails") };
/// let failed = inner.downcast_ref::<CommandFailed>().expect("the command ran");
/// assert_eq!(failed.output().code, Some(3));
/// assert_eq!(failed.output().stdout, b"partial\n");
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Debug)]
pub struct CommandFailed {
    message: String,
    output: CommandOutput,
}

impl CommandFailed {
    /// How much of the end of standard error the message quotes.
    const STDERR_TAIL: usize = 800;

    fn new(command: &str, output: CommandOutput) -> Self {
        let how = if output.timed_out {
            "ran past its time limit".to_owned()
        } else if let Some(code) = output.code {
            format!("exited with status {code}")
        } else if let Some(signal) = output.signal {
            format!("was killed by signal {signal}")
        } else {
            "ended abnormally".to_owned()
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim_end();
        let mut tail = stderr.len().saturating_sub(Self::STDERR_TAIL);
        while !stderr.is_char_boundary(tail) {
            tail += 1;
        }
        let mut message = format!("`{command}` {how}");
        if !stderr.is_empty() {
            message.push_str(": ");
            message.push_str(&stderr[tail..]);
        }
        CommandFailed { message, output }
    }

    /// How the command ended, and everything it wrote (up to its output limit).
    #[must_use]
    pub fn output(&self) -> &CommandOutput {
        &self.output
    }
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandFailed {}

/// Where a run reports its end; see [`Executor::execute`].
#[must_use = "a Done must be finished, or the node fails as dropped"]
pub struct Done {
    pub(crate) shared: Arc<Shared>,
    pub(crate) node: NodeId,
    pub(crate) attempt: u32,
    /// When the run started, if anyone is watching the times.
    pub(crate) started: Option<Instant>,
    pub(crate) finished: bool,
}

impl Done {
    /// Says that the run starts now (for the `Started` event and the run's timing). Call
    /// it just before running; without it, the run counts from when it was handed over.
    pub fn start(&mut self) {
        if self.shared.observed() {
            self.started = Some(Instant::now());
            self.shared.started(self.node, self.attempt);
        }
    }

    /// Whether the graph run is stopping (cancelled, or failed fast): work not yet started
    /// should be finished with [`Error::Cancelled`] rather than run.
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }

    /// Reports the run's end to the scheduler, which may hand more work to the executor
    /// before this returns (an executor's `execute` may call it too: the work that makes
    /// then waits for the outer `execute` to return, so the stack does not grow).
    ///
    /// An output made by another node's call is refused: the node fails, saying so.
    pub fn finish(mut self, output: Output) {
        self.finished = true;
        let here = Origin {
            graph: self.shared.meta.graph,
            node: self.node.0,
        };
        let result = match output.result {
            Ok(_) if output.origin != Some(here) => Err(Error::failed(format!(
                "the executor finished {} with the output of another node",
                self.shared.meta.display_name(self.node)
            ))),
            result => result,
        };
        self.shared
            .finish(self.node, self.attempt, self.started, result);
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if !self.finished {
            let error = if self.shared.is_stopping() {
                Error::Cancelled
            } else {
                Error::failed(format!(
                    "the executor dropped the run of {} without finishing it (was the runtime shut down?)",
                    self.shared.meta.display_name(self.node)
                ))
            };
            self.shared
                .finish(self.node, self.attempt, self.started, Err(error));
        }
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done")
            .field("node", &self.node)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
