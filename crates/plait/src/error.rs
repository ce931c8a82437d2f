//! The one error type of the library.

use std::any::Any;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitStatus;

/// A boxed error, as tasks return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A task's own error, shared so that [`Error`] can be cloned (one failure may have to reach
/// several waiters); downcast it with `error.downcast_ref::<E>()`.
pub type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with plait's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a task, whichever strand runs it.
///
/// A task's own failure never escapes as a panic of the runtime or a silent loss: it arrives
/// here, on the task's [`Handle`](crate::Handle). Match on the variants, or use the `is_*`
/// helpers.
///
/// # Examples
///
/// ```
/// let rt = plait::Runtime::builder().threads(1).build()?;
/// let err = rt.spawn(|| -> u32 { panic!("bad input: -1") }).join().unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.to_string(), "task panicked: bad input: -1");
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked; `message` is the panic's message (or a placeholder when the
    /// payload was not a string).
    #[error("task panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },

    /// The task was cancelled before it finished: by [`Handle::cancel`](crate::Handle::cancel),
    /// by its [`TaskGroup`](crate::TaskGroup), or by the runtime shutting down.
    #[error("task cancelled")]
    Cancelled,

    /// The task ran past its own time limit ([`TaskBuilder::timeout`](crate::TaskBuilder::timeout),
    /// a graph node's, [`timeout`](crate::timeout)) and was stopped.
    #[error("task timed out")]
    TimedOut,

    /// A wait for the task gave up: [`Handle::join_timeout`](crate::Handle::join_timeout)'s
    /// `limit` passed before the task finished, and the task was cancelled. Not the task's
    /// own time limit, which is [`Error::TimedOut`].
    #[error("gave up waiting for the task after {waited:?} (join_timeout) and cancelled it")]
    WaitTimedOut {
        /// How long the wait lasted.
        waited: std::time::Duration,
    },

    /// The task ran and returned an error of its own (see
    /// [`Handle::try_join`](crate::Handle::try_join) and [`TaskGroup`](crate::TaskGroup)).
    #[error("task failed: {0}")]
    Failed(#[source] SharedError),

    /// The strand's bound on queued tasks was reached and the caller asked not to wait.
    #[error(
        "the {strand} strand already holds {bound} unfinished tasks (its queue bound); \
         wait for some to finish, or raise the bound with Builder::queue_bound"
    )]
    QueueFull {
        /// Which strand was full.
        strand: &'static str,
        /// The bound in force.
        bound: usize,
    },

    /// Code that needs the runtime it runs on ([`Runtime::current`](crate::Runtime::current),
    /// [`plait::spawn`](crate::spawn)) runs outside one.
    #[error(
        "not inside a plait runtime: this runs on a thread no runtime started (or in a worker \
         process); spawn through a Runtime (rt.spawn), or call this from inside a task"
    )]
    NoRuntime,

    /// The runtime has been shut down and no longer accepts tasks.
    #[error("the runtime has shut down and accepts no new tasks; build a new Runtime")]
    Shutdown,

    /// The runtime could not be built (for example the OS refused to start a thread).
    #[error("could not build the runtime: {reason}")]
    Build {
        /// What went wrong, with the setting that caused it.
        reason: String,
    },

    /// No task is registered under this name (see `#[plait::task]`).
    #[error(
        "no task is registered as `{name}`{}",
        if close.is_empty() { String::new() } else { format!("; did you mean {}?", close.join(", ")) }
    )]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// Registered names close to it, best first.
        close: Vec<String>,
    },

    /// The worker process running the task died under it: it aborted, segfaulted, called
    /// `exit`, or was killed (by the kernel's OOM killer, say). Other tasks are unaffected
    /// and the pool has replaced the worker.
    #[error(
        "the worker process running {task} died ({exit}){}",
        if stderr.is_empty() {
            String::new()
        } else {
            format!("; what the task wrote to standard error: {stderr}")
        }
    )]
    WorkerLost {
        /// The task's registered name.
        task: String,
        /// How the worker ended.
        exit: WorkerExit,
        /// What the task wrote to standard error while it ran, up to its death: the first
        /// and last 2 KiB, with how much was left out between (empty if it wrote nothing).
        stderr: String,
    },

    /// The task allocated past the worker's memory cap
    /// ([`ProcessOptions::memory_limit`](crate::process::ProcessOptions::memory_limit)); the
    /// worker was replaced.
    #[error(
        "{task} allocated past the worker's memory cap of {limit} bytes; raise \
         ProcessOptions::memory_limit if it needs more"
    )]
    MemoryLimit {
        /// The task's registered name.
        task: String,
        /// The cap in force, in bytes.
        limit: u64,
    },

    /// A task's arguments are larger than the process strand carries; refused at spawn.
    #[error(
        "the arguments of {task} are {bytes} bytes, over the payload limit of {limit} bytes; \
         raise ProcessOptions::payload_limit, or pass a path instead of the data"
    )]
    PayloadTooLarge {
        /// The task's registered name.
        task: String,
        /// The encoded size.
        bytes: usize,
        /// The limit in force.
        limit: usize,
    },

    /// A task's arguments or result could not be encoded or decoded, or its worker sent a
    /// frame that does not decode (that worker was replaced).
    #[error("encoding for {task} failed: {reason}")]
    Codec {
        /// The task's registered name.
        task: String,
        /// What went wrong.
        reason: String,
    },

    /// A graph node did not run because a node it needs (directly or further up) failed.
    #[error("{node} did not run: it needs {failed}, which failed")]
    Upstream {
        /// The node that did not run.
        node: String,
        /// The failed node upstream of it.
        failed: String,
    },

    /// A graph node's result was released once its consumers had run (or the run
    /// stopped), or was taken already.
    #[error(
        "the result of {node} is gone: it was released once its consumers had run (or the run stopped), or taken already; mark the node with Graph::node(..).keep() to keep it"
    )]
    Released {
        /// The node.
        node: String,
    },

    /// A worker process could not be started, or did not become a worker.
    #[error("the process strand cannot start its workers: {reason}")]
    WorkerStart {
        /// What went wrong, and the way out.
        reason: String,
    },
}

/// How a worker process ended: an exit status or a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerExit {
    /// It exited with this status (a task called `std::process::exit`, say).
    Code(i32),
    /// A signal killed it: 6 is an abort, 9 a kill (the kernel's OOM killer, or another
    /// process), 11 a segmentation fault.
    Signal(i32),
    /// The status could not be read.
    Unknown,
}

impl From<ExitStatus> for WorkerExit {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => WorkerExit::Code(code),
            (None, Some(signal)) => WorkerExit::Signal(signal),
            (None, None) => WorkerExit::Unknown,
        }
    }
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerExit::Code(code) => write!(f, "exit status {code}"),
            WorkerExit::Signal(signal) => {
                let name = match signal {
                    4 => " (SIGILL)",
                    6 => " (SIGABRT)",
                    7 => " (SIGBUS)",
                    8 => " (SIGFPE)",
                    9 => " (SIGKILL)",
                    11 => " (SIGSEGV)",
                    15 => " (SIGTERM)",
                    _ => "",
                };
                write!(f, "signal {signal}{name}")
            }
            WorkerExit::Unknown => f.write_str("an unknown status"),
        }
    }
}

impl Error {
    /// Returns `true` if the task panicked.
    #[must_use]
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked { .. })
    }

    /// Returns `true` if the task was cancelled.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// Returns `true` if the task ran past its own time limit (not a wait's: see
    /// [`Error::WaitTimedOut`]).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::TimedOut)
    }

    /// Wraps an error that a task returned.
    pub fn failed(error: impl Into<BoxError>) -> Self {
        Error::Failed(SharedError::from(error.into()))
    }

    /// Turns a panic payload (from `catch_unwind` or a `JoinError`) into `Panicked`,
    /// dropping the payload where a panic in its own `Drop` cannot escape (see
    /// [`take_panic`]).
    pub(crate) fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        Error::Panicked {
            message: take_panic(payload),
        }
    }
}

/// A task panicked and nobody holds its handle: say so rather than lose it.
pub(crate) fn report_unobserved(id: crate::id::TaskId, error: &Error) {
    tracing::warn!(task = %id, %error, "a detached task panicked; nobody held its handle");
}

/// Runs `f`, catching a panic: `Err` with the panic's message, its payload dropped (see
/// [`take_panic`]).
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(take_panic)
}

/// A panic's message, its payload dropped. A payload is any value (`panic_any`), and its
/// `Drop` may panic in turn: that second panic is caught here too, and said in the message,
/// so that it reaches neither the caller nor, mid-wait, an abort.
pub(crate) fn take_panic(payload: Box<dyn Any + Send>) -> String {
    let message = panic_message(payload.as_ref());
    match drop_payload(payload) {
        None => message,
        Some(second) => format!("{message}; dropping its payload panicked too: {second}"),
    }
}

/// Drops a panic payload inside `catch_unwind`; returns the message of the panic its `Drop`
/// raised, if it raised one. A payload of that panic is dropped the same way, a few levels
/// deep; one that panics on every drop beyond that is leaked rather than let loose.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) -> Option<String> {
    let mut first = None;
    let mut payload = payload;
    for _ in 0..4 {
        match panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return first,
            Err(next) => {
                first.get_or_insert_with(|| panic_message(next.as_ref()));
                payload = next;
            }
        }
    }
    std::mem::forget(payload);
    first
}

/// The message of a panic payload: the `&str` or `String` that `panic!` carries.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<a panic payload that is not a string>".to_owned()
    }
}

/// A task that could not be spawned, handed back whole with the reason, so nothing is lost.
///
/// Returned by [`Runtime::try_spawn`](crate::Runtime::try_spawn) and
/// [`Runtime::try_spawn_async`](crate::Runtime::try_spawn_async).
pub struct SpawnError<F> {
    error: Error,
    task: F,
}

impl<F> SpawnError<F> {
    pub(crate) fn new(error: Error, task: F) -> Self {
        SpawnError { error, task }
    }

    /// Why the task was refused: [`Error::QueueFull`] or [`Error::Shutdown`].
    #[must_use]
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Takes the task back, to retry it or run it elsewhere.
    #[must_use]
    pub fn into_task(self) -> F {
        self.task
    }

    /// Drops the task and keeps the reason.
    #[must_use]
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task not spawned: {}", self.error)
    }
}

impl<F> std::error::Error for SpawnError<F> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Shown where a strand's name is needed in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrandName {
    Thread,
    Coroutine,
    Process,
}

impl StrandName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StrandName::Thread => "thread",
            StrandName::Coroutine => "coroutine",
            StrandName::Process => "process",
        }
    }
}

impl fmt::Display for StrandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic payload whose `Drop` panics: what `panic_any(BadDrop)` throws.
    struct BadDrop;

    impl Drop for BadDrop {
        fn drop(&mut self) {
            panic!("BadDrop's drop");
        }
    }

    #[test]
    fn a_payload_whose_drop_panics_is_dropped_and_said() {
        let payload = panic::catch_unwind(|| -> u32 { panic::panic_any(BadDrop) }).unwrap_err();
        let error = Error::from_panic(payload);
        let message = error.to_string();
        assert!(message.contains("not a string"), "{message}");
        assert!(
            message.contains("dropping its payload panicked too: BadDrop's drop"),
            "{message}"
        );
    }

    #[test]
    fn panic_messages_are_extracted_from_str_and_string() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert!(panic_message(&42_u8).contains("not a string"));
    }

    /// One of each variant: the `match` below stops compiling when a variant is added
    /// without an entry here.
    fn one_of_each() -> Vec<Error> {
        let all = vec![
            Error::Panicked {
                message: "boom".into(),
            },
            Error::Cancelled,
            Error::TimedOut,
            Error::WaitTimedOut {
                waited: std::time::Duration::from_millis(20),
            },
            Error::failed(std::io::Error::other("disk full")),
            Error::QueueFull {
                strand: "thread",
                bound: 8,
            },
            Error::Shutdown,
            Error::Build {
                reason: "ProcessOptions::workers is 0".into(),
            },
            Error::UnknownTask {
                name: "app::resise".into(),
                close: vec!["app::resize".into()],
            },
            Error::UnknownTask {
                name: "zzz".into(),
                close: Vec::new(),
            },
            Error::WorkerLost {
                task: "app::resize".into(),
                exit: WorkerExit::Signal(11),
                stderr: "bad pixel".into(),
            },
            Error::WorkerLost {
                task: "app::resize".into(),
                exit: WorkerExit::Code(3),
                stderr: String::new(),
            },
            Error::MemoryLimit {
                task: "app::resize".into(),
                limit: 1 << 30,
            },
            Error::PayloadTooLarge {
                task: "app::resize".into(),
                bytes: 300 << 20,
                limit: 256 << 20,
            },
            Error::Codec {
                task: "app::resize".into(),
                reason: "bytes left over".into(),
            },
            Error::Upstream {
                node: "report".into(),
                failed: "fetch".into(),
            },
            Error::Released {
                node: "fetch".into(),
            },
            Error::WorkerStart {
                reason: "it exited without answering".into(),
            },
            Error::NoRuntime,
        ];
        for error in &all {
            match error {
                Error::Panicked { .. }
                | Error::Cancelled
                | Error::TimedOut
                | Error::WaitTimedOut { .. }
                | Error::Failed(_)
                | Error::QueueFull { .. }
                | Error::Shutdown
                | Error::Build { .. }
                | Error::UnknownTask { .. }
                | Error::WorkerLost { .. }
                | Error::MemoryLimit { .. }
                | Error::PayloadTooLarge { .. }
                | Error::Codec { .. }
                | Error::Upstream { .. }
                | Error::Released { .. }
                | Error::WorkerStart { .. }
                | Error::NoRuntime => {}
            }
        }
        all
    }

    #[test]
    fn no_message_has_a_run_of_spaces_a_line_break_or_loose_ends() {
        for error in one_of_each() {
            let message = error.to_string();
            assert!(!message.contains("  "), "a run of spaces: {message:?}");
            assert!(!message.contains('\n'), "a line break: {message:?}");
            assert_eq!(message.trim(), message, "loose ends: {message:?}");
        }
    }

    #[test]
    fn queue_full_names_the_bound_and_the_way_out() {
        let msg = Error::QueueFull {
            strand: "thread",
            bound: 8,
        }
        .to_string();
        assert!(msg.contains("8 unfinished"), "{msg}");
        assert!(msg.contains("queue_bound"), "{msg}");
    }
}
