//! Commands as tasks: run a program with its arguments, environment, directory and input,
//! capture its output up to a bound, and stop its whole process group on a time limit.
//!
//! [`Runtime::spawn_command`](crate::Runtime::spawn_command) runs the command from the runtime itself (it is already a
//! process of its own: no worker needed between). The same command is also the registered
//! task [`run_command`](fn@run_command), for work that arrives by name.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::WorkerExit;
use super::capture::{self, Kept};
use super::child::Child;
use super::program;

/// How much of each output stream a command keeps by default: 1 MiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;

/// After a command exits, how long to wait for processes it left behind to close its output.
pub(super) const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// A program to run, with everything it runs with; see [`Runtime::spawn_command`](crate::Runtime::spawn_command).
///
/// # Examples
///
/// ```
/// use plait::process::Command;
/// let rt = plait::Runtime::new()?;
/// let out = rt
///     .spawn_command(Command::new("sh").args(["-c", "echo hi $WHO; echo oops >&2; exit 3"]).env("WHO", "there"))
///     .join()?;
/// assert_eq!(out.stdout, b"hi there\n");
/// assert_eq!(out.stderr, b"oops\n");
/// assert_eq!(out.code, Some(3));
/// assert!(!out.success());
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[must_use]
pub struct Command {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Variables added to (or replacing those of) the inherited environment.
    pub env: Vec<(String, String)>,
    /// The working directory (default: the runtime's).
    pub cwd: Option<PathBuf>,
    /// What the command reads on standard input (default: nothing, as from `/dev/null`).
    #[serde(with = "serde_bytes")]
    pub stdin: Vec<u8>,
    /// A time limit: past it the command's whole process group is killed.
    pub timeout: Option<Duration>,
    /// How many bytes of each of standard output and standard error to keep; the rest is
    /// read and counted, not kept.
    pub output_limit: usize,
    /// Called with each line the command writes, as it writes it (see
    /// [`on_line`](Command::on_line)). Local only: it does not travel to a worker
    /// process or a queue.
    #[serde(skip)]
    pub lines: Option<LineSink>,
}

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A function of a stream and a line.
type SinkFn = dyn Fn(Stream, &[u8]) + Send + Sync;

/// What [`Command::on_line`] calls with each line; equal only to its own clones.
#[derive(Clone)]
pub struct LineSink(pub(super) Arc<SinkFn>);

impl PartialEq for LineSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LineSink {}

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSink")
    }
}

pub use super::capture::LONGEST_LINE;

impl Command {
    /// A command that runs `program`, found on `PATH` (the one its [`env`](Command::env)
    /// sets, if it sets one) unless it holds a `/`.
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            argv: vec![program.into()],
            env: Vec::new(),
            cwd: None,
            stdin: Vec::new(),
            timeout: None,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            lines: None,
        }
    }

    /// A shell command line, run by `sh -c`.
    pub fn shell(line: impl Into<String>) -> Self {
        Command::new("sh").args(["-c".to_owned(), line.into()])
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets what the command reads on standard input.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = input.into();
        self
    }

    /// Sets a time limit; past it the whole process group is killed and the output says
    /// [`timed_out`](CommandOutput::timed_out).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Sets how many bytes of each output stream to keep (default
    /// [`DEFAULT_OUTPUT_LIMIT`]).
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }

    /// Calls `sink` with each line the command writes, on either stream, as it writes it:
    /// the line without its `\n` (a line longer than [`LONGEST_LINE`] comes in pieces; a
    /// last line without a newline comes at the end). Lines come from the runtime's I/O
    /// threads, one at a time per stream: keep `sink` short (print, append to a file, send
    /// on a channel). All the output still counts against
    /// [`output_limit`](Command::output_limit) for what [`CommandOutput`] keeps; the sink
    /// sees all of it. Local only: a command sent to a worker process or a queue runs
    /// without it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use plait::process::{Command, Stream};
    ///
    /// let rt = plait::Runtime::new()?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let keep = Arc::clone(&seen);
    /// let command = Command::shell("echo one; echo two >&2; printf three").on_line(
    ///     move |stream, line| keep.lock().unwrap().push((stream, String::from_utf8_lossy(line).into_owned())),
    /// );
    /// rt.spawn_command(command).join()?;
    /// let mut seen = seen.lock().unwrap().clone();
    /// seen.sort();
    /// assert_eq!(seen, [
    ///     (Stream::Stdout, "one".to_owned()),
    ///     (Stream::Stdout, "three".to_owned()),
    ///     (Stream::Stderr, "two".to_owned()),
    /// ]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn on_line(mut self, sink: impl Fn(Stream, &[u8]) + Send + Sync + 'static) -> Self {
        self.lines = Some(LineSink(Arc::new(sink)));
        self
    }

    /// The program's name, for messages.
    fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }
}

/// How a command ended, and what it wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandOutput {
    /// Its exit status, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether it ran past its time limit (and its process group was killed).
    pub timed_out: bool,
    /// The first [`output_limit`](Command::output_limit) bytes of its standard output.
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    /// The first [`output_limit`](Command::output_limit) bytes of its standard error.
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    /// Bytes of standard output beyond the limit, read and dropped.
    pub stdout_dropped: u64,
    /// Bytes of standard error beyond the limit, read and dropped.
    pub stderr_dropped: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CommandOutput {
    /// A command that exited with `code`, having written `stdout` and `stderr`, after
    /// running for `elapsed`: for an executor that ran it elsewhere (another machine, a
    /// queue's worker) or replays a run it recorded. Set the other fields after, if they
    /// apply.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use plait::process::CommandOutput;
    ///
    /// let mut killed = CommandOutput::exited(None, b"".to_vec(), b"".to_vec(), Duration::ZERO);
    /// killed.signal = Some(9);
    /// assert!(!killed.success());
    /// ```
    #[must_use]
    pub fn exited(code: Option<i32>, stdout: Vec<u8>, stderr: Vec<u8>, elapsed: Duration) -> Self {
        CommandOutput {
            code,
            signal: None,
            timed_out: false,
            stdout,
            stderr,
            stdout_dropped: 0,
            stderr_dropped: 0,
            elapsed,
        }
    }

    /// Whether it exited with status 0 in time.
    #[must_use]
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// How it ended, as for a worker process.
    #[must_use]
    pub fn exit(&self) -> WorkerExit {
        match (self.code, self.signal) {
            (Some(code), _) => WorkerExit::Code(code),
            (None, Some(signal)) => WorkerExit::Signal(signal),
            (None, None) => WorkerExit::Unknown,
        }
    }
}

/// A command that could not be run at all (the program does not exist, say).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(String);

impl CommandError {
    pub(super) fn new(message: String) -> Self {
        CommandError(message)
    }
}

/// Runs `command`: the registered task behind [`Runtime::spawn_command`](crate::Runtime::spawn_command), for running
/// commands by name (`plait::process::command::run_command`) or in a worker.
///
/// # Errors
///
/// [`CommandError`] if the command cannot start: an empty `argv`, a program that does not
/// exist or cannot be executed, a working directory that does not exist.
#[crate::task]
pub fn run_command(command: Command) -> Result<CommandOutput, CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CommandError(format!("cannot start an I/O loop: {error}")))?;
    runtime.block_on(run(command))
}

/// `command` as `std` starts it, with its output piped (and its input, if it has any), and
/// its program's name for messages.
///
/// # Errors
///
/// An empty `argv`.
pub(super) fn prepare(command: &Command) -> Result<(String, std::process::Command), CommandError> {
    let program = command.program().to_owned();
    if program.is_empty() {
        return Err(CommandError(
            "an empty command: argv needs a program".to_owned(),
        ));
    }
    let mut process = std::process::Command::new(program::find(&program, &command.env));
    process.arg0(&program).args(&command.argv[1..]);
    // Run from a worker, a command must not take itself for one. (Removing a variable
    // makes `std` copy the environment for the child: only when there is one to remove.)
    for inherited in [super::worker::WORKER_ENV, super::worker::PARENT_ENV] {
        if std::env::var_os(inherited).is_some() {
            process.env_remove(inherited);
        }
    }
    process
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .stdin(if command.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &command.cwd {
        process.current_dir(cwd);
    }
    Ok((program, process))
}

/// Says that `command` (`program`) could not start, and why.
pub(super) fn cannot_start(
    command: &Command,
    program: &str,
    error: &std::io::Error,
) -> CommandError {
    let place = command
        .cwd
        .as_ref()
        .map_or_else(String::new, |cwd| format!(" in {}", cwd.display()));
    CommandError(format!("cannot run `{program}`{place}: {error}"))
}

/// Says that waiting for `program` failed, and why.
pub(super) fn cannot_wait(program: &str, error: &std::io::Error) -> CommandError {
    CommandError(format!("waiting for `{program}`: {error}"))
}

/// Runs a command to its end (or its time limit).
pub(crate) async fn run(command: Command) -> Result<CommandOutput, CommandError> {
    let (program, mut process) = prepare(&command)?;
    let started = Instant::now();
    // In a process group of its own, which goes with it: when it ends, when its time
    // limit kills it, and when this run is dropped (cancelled) before it ends.
    let mut child =
        Child::spawn(&mut process).map_err(|error| cannot_start(&command, &program, &error))?;
    let (mut out, mut err) = kept(&command);
    let feeding = child.stdin.take().map(|mut stdin| {
        let input = command.stdin;
        // A command that does not read its input closes the pipe: not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
        })
    });
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let timeout = command.timeout;
    let ended = async {
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
                Ok(status) => (status, false),
                Err(_) => {
                    child.kill();
                    (child.wait().await, true)
                }
            },
            None => (child.wait().await, false),
        }
    };
    // One grace for both streams: a leftover holding one likely holds the other.
    let (status, timed_out) =
        capture::read_while(ended, (stdout, &mut out), (stderr, &mut err), OUTPUT_GRACE).await;
    let status = status.map_err(|error| cannot_wait(&program, &error))?;
    let elapsed = started.elapsed();
    // A process that left the group may still hold its input open: stop feeding it.
    if let Some(feeding) = feeding {
        feeding.abort();
    }
    Ok(output(status, timed_out, (out, err), elapsed))
}

/// Where `command`'s standard output and error go as they are read: kept up to its limit,
/// and handed line by line to its sink, if it has one.
pub(super) fn kept(command: &Command) -> (Kept, Kept) {
    let says = |stream: Stream| -> Option<capture::Say> {
        let sink = command.lines.clone()?;
        Some(Box::new(move |line: &[u8]| (sink.0)(stream, line)))
    };
    (
        Kept::new(command.output_limit, says(Stream::Stdout)),
        Kept::new(command.output_limit, says(Stream::Stderr)),
    )
}

/// How a command ended: its status, whether its time limit killed it, what it wrote.
pub(super) fn output(
    status: std::process::ExitStatus,
    timed_out: bool,
    (out, err): (Kept, Kept),
    elapsed: Duration,
) -> CommandOutput {
    use std::os::unix::process::ExitStatusExt;
    CommandOutput {
        code: status.code(),
        signal: status.signal(),
        timed_out,
        stdout: out.bytes,
        stderr: err.bytes,
        stdout_dropped: out.dropped,
        stderr_dropped: err.dropped,
        elapsed,
    }
}
