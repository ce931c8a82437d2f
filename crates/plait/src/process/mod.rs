//! The process strand: tasks in worker processes, for isolation and hard limits.
//!
//! A thread or a coroutine shares the program's memory, so a task that crashes, leaks or
//! hangs takes the program with it. A process task runs in a worker process: a crash
//! there costs one worker (replaced at once) and fails that one task; a time limit or a
//! memory cap is enforced by the kernel; a leak ends when the worker is recycled.
//!
//! * `#[plait::task]` on a function registers it by name, so that a worker can run it.
//! * [`Runtime::spawn_process`](crate::Runtime::spawn_process): one task, the same [`Handle`] as the other strands.
//! * [`Runtime::map_process`](crate::Runtime::map_process): many, batched so that tiny tasks do not pay a round trip each.
//! * [`ProcessOptions`]: worker count, recycling, memory cap, payload limit, crash retries,
//!   an initializer; given to [`Builder::processes`](crate::Builder::processes).
//! * [`Runtime::spawn_command`](crate::Runtime::spawn_command): a program with its arguments, environment, directory and
//!   input, its output captured, its process group killed on a time limit.
//! * [`init`]: the call at the top of `main` where a worker process starts serving;
//!   [`test_worker!`](crate::test_worker) does the same in a test binary.
//!
//! # Nothing outlives plait
//!
//! Every process plait starts (a worker, a command of [`Runtime::spawn_command`](crate::Runtime::spawn_command) or of
//! `plait run`) leads a process group of its own, and what it starts stays in that group
//! unless it leaves it. Then:
//!
//! * **When such a process ends** (a worker that crashed, was recycled or was drained; a
//!   command that finished), whatever it left running in its group is killed before plait
//!   reaps it. A background process a command started ends with the command; one a task
//!   started ends with its worker.
//! * **A time limit, a cancellation, or the runtime's end** (a [`shutdown`](crate::Runtime::shutdown)
//!   or a drop) kills the whole group with the process.
//! * **plait reaps its own children** (through a pidfd, or a waiting thread on kernels
//!   without one), so none is left a zombie, even when the runtime that started it is gone:
//!   after `shutdown` or a drop returns, every worker and command has been killed and
//!   reaped, and everything in their groups has been sent SIGKILL (those are not plait's
//!   children; their new parent, init, reaps them).
//! * **If the program dies outright** (SIGKILL, the OOM killer), its *keeper* kills every
//!   group still running, within milliseconds (measured here: about 2 ms, beside two busy
//!   loops). The keeper is this program's executable run afresh (it holds none of the
//!   program's memory), caught before `main` by a constructor plait installs, so it needs
//!   no `plait::init`; it shows as `plait-keeper` in `ps`, starts the first time the
//!   program starts a process, and lives as long as the program, in a process group of its
//!   own, deaf to the terminal's signals. Its input is a socket whose other end the program
//!   holds: the program's death is the end of its input. One killed by someone else is
//!   replaced the next time the program starts a process. If none can start, processes
//!   still start, and a warning says that this one guarantee is off. (Workers also die by
//!   their parent-death signal.)
//!
//! What escapes, precisely:
//!
//! * a process that leaves its group, by `setsid` (a daemon) or `setpgid`: no group kill
//!   reaches it;
//! * everything, if the program and its keeper are killed together (`kill -9` of both, or
//!   of every process), or the program forks without `exec` (the fork holds the keeper's
//!   socket open);
//! * for a moment, a command a *process task* starts with [`run_command`](fn@run_command):
//!   it leads a group of its own inside the worker, so the runtime's kill of the worker's
//!   group misses it, and the worker's own keeper kills it a few milliseconds after the
//!   worker dies, after `shutdown` may have returned;
//! * commands run by `plait advise`, which are not in a group of their own: like `time`,
//!   it runs the command in the terminal's foreground, where Ctrl-C reaches it.
//!
//! The keeper is the program's child: a program that waits for all of its children to
//! end (`waitpid(-1)` until `ECHILD`) never sees the last one.
//!
//! Because a worker is not in the terminal's foreground group, the terminal's Ctrl-C (and
//! Ctrl-Z) reach the program, not its workers: a program that catches Ctrl-C can shut its
//! runtime down gracefully. The flip side: a task must not prompt on the terminal (an
//! `ssh` or `sudo` asking for a password stops there).
//!
//! # What a failure does
//!
//! | the task… | its handle reports | the pool |
//! |---|---|---|
//! | panics | [`Error::Panicked`] | the worker goes on |
//! | aborts, segfaults, calls `exit`, is OOM-killed | [`Error::WorkerLost`] with the signal or status and what the task wrote to standard error | replaces the worker; the tasks queued behind go to other workers |
//! | runs past its [time limit](crate::TaskBuilder::timeout) | [`Error::TimedOut`] | kills and replaces the worker |
//! | allocates past the [memory cap](ProcessOptions::memory_limit) | [`Error::MemoryLimit`] | replaces the worker |
//! | is given arguments of another type (by name) | [`Error::Codec`] naming both types | the worker goes on |
//! | is cancelled while running | [`Error::Cancelled`] | kills and replaces the worker |
//! | answers with a frame that does not decode | [`Error::Codec`] naming the task | kills and replaces the worker |
//! | returns a result that does not decode as its type | [`Error::Codec`] naming the task | the worker goes on |
//!
//! A worker says in a page of memory it shares with the runtime which request it is on,
//! so when it dies the runtime knows which task was running: that task alone is charged
//! with the crash. It runs again only if
//! [`crash_retries`](ProcessOptions::crash_retries) allows, so a poison task runs exactly
//! `crash_retries + 1` times and cannot take down worker after worker. The tasks queued
//! behind it on that worker never started, and go to other workers uncharged.
//!
//! A busy worker sends its answers in batches, so a worker that dies may take with it
//! answers of tasks it had finished but not yet sent. Those tasks run again, uncharged:
//! at most as many as the worker held (32 at most), a few per crash in practice (measured:
//! 3 to 4.5 per crash, for tasks of about 20 µs beside two busy loops on 2 cores). In a
//! [`map_process`](crate::Runtime::map_process), a chunk's results travel together, so the items
//! of a chunk that ran before the crashing one run again. A task that shares a worker with
//! a crashing one may therefore run twice: make tasks with side effects idempotent, as for
//! any queue that retries.
//!
//! [`Error::MemoryLimit`] is decided from facts, not from what a worker printed last: the
//! cap was set, the worker aborted, and Rust's allocator reported a failed allocation while
//! that task ran (at the end of a line of what the task wrote to standard error since it
//! started, whatever came before and whatever backtrace follows). A task that prints those
//! words and dies another way is [`Error::WorkerLost`]; one that prints them and aborts
//! itself is taken at its word. [`Error::WorkerLost`] carries what the lost task wrote to
//! standard error since it started (its first and last 2 KiB): what the runtime read after
//! the worker began the task, which may begin with the end of what the task before wrote,
//! should the runtime read it late.
//!
//! A task after which its worker died, between tasks, is run again uncharged three times;
//! the fourth time it is charged with the crash (a task that leaves its worker to die just
//! after it ends, say).
//!
//! Arguments and results must be serde types; anything else does not compile:
//!
//! ```compile_fail,E0277
//! #[plait::task]
//! fn size(file: std::fs::File) -> u64 { // error: `File` is not `Serialize`
//!     file.metadata().map_or(0, |m| m.len())
//! }
//! ```
//!
//! Arguments and results travel as `postcard` (serde's compact binary form). For large
//! binary payloads use `serde_bytes::ByteBuf` (or `#[serde(with = "serde_bytes")]`): a
//! plain `Vec<u8>` is encoded element by element.
//!
//! Workers die with the runtime: dropping it (or [`shutdown`](crate::Runtime::shutdown)) stops and
//! reaps them and their groups, and if the program is killed outright the keeper ends them
//! (see above).

mod args;
mod child;
mod codec;
pub mod command;
mod feeder;
mod keeper;
mod last_words;
pub(crate) mod map;
mod options;
mod outbox;
mod pool;
mod registry;
mod remote;
mod slot;
mod spawn;
mod supervisor;
mod worker;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

pub use crate::error::WorkerExit;
pub use args::EncodedArgs;
pub use command::{Command, CommandError, CommandOutput, run_command};
pub use map::{MapProcess, MapProcessUnordered};
pub use options::{DEFAULT_PAYLOAD_LIMIT, ProcessOptions};
use pool::{Control, Payload, Pool, Replier, Reply, Request, Stop, Ticket};
pub use registry::{Registration, Task, registered_tasks, run_by_name_json};
use remote::Remote;
pub use worker::{WORKER_TEST_NAME, init};

use crate::coroutine::CoroutineStrand;
use crate::error::StrandName;
use crate::strand::StrandState;
use crate::{Error, Handle, Result, TaskId};

/// The process strand of a runtime: its state and, once first used, its pool of workers.
pub(crate) struct ProcessStrand {
    pub(crate) state: Arc<StrandState>,
    /// The strand's number among the strands whose tasks run as coroutines (its tasks wait
    /// on the coroutine strand's threads).
    pub(crate) number: u64,
    options: ProcessOptions,
    pool: OnceLock<Arc<Pool>>,
    /// Held while the pool starts, so that it starts once.
    starting: Mutex<()>,
    /// Where its waits run: a task by name, a chunk of a map, the supervisors of its
    /// workers are coroutines.
    coroutines: Arc<CoroutineStrand>,
}

impl ProcessStrand {
    pub(crate) fn state(bound: usize) -> Arc<StrandState> {
        Arc::new(StrandState::new(StrandName::Process, bound))
    }

    pub(crate) fn new(
        state: Arc<StrandState>,
        number: u64,
        options: ProcessOptions,
        coroutines: Arc<CoroutineStrand>,
    ) -> Self {
        ProcessStrand {
            state,
            number,
            options,
            pool: OnceLock::new(),
            starting: Mutex::new(()),
            coroutines,
        }
    }

    /// The pool, started on first use (not after a shutdown).
    pub(crate) fn pool(&self) -> Result<&Arc<Pool>> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        if self.state.is_closed() {
            return Err(Error::Shutdown);
        }
        if worker::started_as_worker() && !worker::serving() {
            return Err(Error::WorkerStart {
                reason: "this process was started as a plait worker but did not call \
                         plait::init() before using the process strand; call it first thing \
                         in main (or invoke plait::test_worker!() in a test binary)"
                    .to_owned(),
            });
        }
        let _starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        let pool = Pool::start(
            self.options.clone(),
            Arc::clone(&self.state),
            &self.coroutines.handle,
        )?;
        Ok(self.pool.get_or_init(|| pool))
    }

    /// Stops the workers, waiting up to `limit` for them to be reaped.
    pub(crate) fn stop(&self, drain: bool, limit: Duration) {
        if let Some(pool) = self.pool.get() {
            pool.stop(if drain { Stop::Drain } else { Stop::Kill }, limit);
        }
    }

    pub(crate) fn workers(&self) -> usize {
        self.options.worker_count()
    }
}

/// A request submitted to the pool, and its answer to come.
///
/// Dropping it before the answer came cancels the request: a queued one never runs, and a
/// running one costs its worker. Made before the task's future, and moved into it, so that
/// dropping the future unpolled still cancels.
pub(crate) struct Call {
    pool: Arc<Pool>,
    ticket: Arc<Ticket>,
    answer: Option<oneshot::Receiver<Reply>>,
}

impl Call {
    pub(crate) fn submit(
        pool: &Arc<Pool>,
        task: &'static str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Call {
        let (sender, answer) = oneshot::channel();
        let ticket = Arc::new(Ticket::default());
        let replier = Replier::Channel {
            sender,
            ticket: Arc::clone(&ticket),
        };
        pool.submit(Request::new(
            pool.next_id(),
            pool,
            task,
            payload,
            timeout,
            replier,
        ));
        Call {
            pool: Arc::clone(pool),
            ticket,
            answer: Some(answer),
        }
    }

    /// The answer; `None` if the request was dropped unanswered (the pool stopped).
    pub(crate) async fn reply(mut self) -> Option<Reply> {
        // Awaited in place, so that a drop during the wait still finds it and cancels.
        let answer = self.answer.as_mut()?.await.ok();
        // Answered (or dropped by the pool): nothing left to cancel.
        self.answer = None;
        answer
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.answer.is_some()
            && let Some(slot) = self.ticket.cancel()
        {
            let _ = self.pool.controls[slot].send(Control::Cancel);
        }
    }
}

/// Encodes a task's arguments, refusing them if they are over the payload limit.
pub(crate) fn encode_args<T: Task>(args: &T::Args, limit: usize) -> Result<Bytes> {
    let bytes = postcard::to_allocvec(args).map_err(|error| Error::Codec {
        task: T::NAME.to_owned(),
        reason: format!("the arguments could not be encoded: {error}"),
    })?;
    if bytes.len() > limit {
        return Err(Error::PayloadTooLarge {
            task: T::NAME.to_owned(),
            bytes: bytes.len(),
            limit,
        });
    }
    Ok(Bytes::from(bytes))
}

/// Decodes a task's result, all of it (bytes left over mean a result of another type).
pub(crate) fn decode_output<T: Task>(bytes: &[u8]) -> Result<T::Output> {
    let expected = std::any::type_name::<T::Output>();
    let codec = |reason| Error::Codec {
        task: T::NAME.to_owned(),
        reason,
    };
    let (output, rest) = postcard::take_from_bytes(bytes).map_err(|error| {
        codec(format!(
            "the result could not be decoded as `{expected}`: {error}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(codec(format!(
            "the result is {} bytes, of which {} were left after decoding a `{expected}`",
            bytes.len(),
            rest.len()
        )));
    }
    Ok(output)
}

impl ProcessStrand {
    /// Runs the registered task `T` with `args` in a worker, with an optional hard time
    /// limit; see `Runtime::spawn_process`.
    pub(crate) fn spawn<T: Task>(
        &self,
        args: T::Args,
        timeout: Option<Duration>,
    ) -> Handle<T::Output> {
        let strand = self;
        let refused = |error| Handle::ready(TaskId::next(), Err(error));
        let pool = match strand.pool() {
            Ok(pool) => Arc::clone(pool),
            Err(error) => return refused(error),
        };
        let args = match encode_args::<T>(&args, pool.options.payload_limit) {
            Ok(args) => args,
            Err(error) => return refused(error),
        };
        if let Err(error) = strand.state.admit() {
            return refused(error);
        }
        let id = TaskId::next();
        let remote = Arc::new(Remote::<T>::new(id, Arc::clone(&pool)));
        pool.submit(Request::new(
            pool.next_id(),
            &pool,
            T::NAME,
            Payload::One(args),
            timeout,
            Replier::Direct(Arc::clone(&remote) as _),
        ));
        Handle::thread(id, remote)
    }

    /// Runs the task registered as `name` with encoded arguments, with an optional hard
    /// time limit; see `Runtime::spawn_process_by_name`.
    pub(crate) fn spawn_by_name(
        &self,
        name: &str,
        args: EncodedArgs,
        timeout: Option<Duration>,
    ) -> Handle<Vec<u8>> {
        let strand = self;
        let refused = |error| Handle::ready(TaskId::next(), Err(error));
        let Some(registration) = registry::lookup(name) else {
            return refused(registry::unknown_task(name));
        };
        let takes = (registration.args_type)();
        if args.type_name() != takes {
            return refused(Error::Codec {
                task: registration.name.to_owned(),
                reason: format!(
                    "the arguments were encoded as `{}`, but the task takes `{takes}`",
                    args.type_name()
                ),
            });
        }
        let args = args.into_bytes();
        let pool = match strand.pool() {
            Ok(pool) => Arc::clone(pool),
            Err(error) => return refused(error),
        };
        if args.len() > pool.options.payload_limit {
            return refused(Error::PayloadTooLarge {
                task: name.to_owned(),
                bytes: args.len(),
                limit: pool.options.payload_limit,
            });
        }
        if let Err(error) = strand.state.admit() {
            return refused(error);
        }
        let call = Call::submit(&pool, registration.name, Payload::One(args.into()), timeout);
        let future = async move {
            match call.reply().await {
                Some(Reply::One(result)) => result.map(|bytes| bytes.to_vec()),
                Some(Reply::Batch(_) | Reply::BatchLost { .. }) => {
                    unreachable!("a call is answered by a call's reply")
                }
                None => Err(Error::Cancelled),
            }
        };
        self.coroutines.spawn_counted(future, self.number)
    }

    /// Starts the workers now and waits until every one serves.
    pub(crate) fn start(&self) -> Result<()> {
        if self.state.is_closed() {
            return Err(Error::Shutdown);
        }
        let pool = Arc::clone(self.pool()?);
        self.coroutines
            .block_on(async move { pool.wait_serving().await })
    }

    /// Worker processes started so far, replacements included.
    pub(crate) fn workers_started(&self) -> usize {
        self.pool.get().map_or(0, |pool| {
            pool.started.load(std::sync::atomic::Ordering::Relaxed)
        })
    }
}

/// Lets the process strand run in a test binary, whose `main` belongs to the test harness.
///
/// Invoke it once, at the top level of each integration-test file (or in the crate's unit
/// tests) that uses the process strand. It defines a test named
/// [`__plait_worker__`](WORKER_TEST_NAME) that does nothing in a normal test run; the
/// runtime starts its workers by running the test binary with that test's name as the
/// filter, and the test becomes a worker there (it calls [`init`]).
///
/// ```ignore
/// plait::test_worker!();
///
/// #[plait::task]
/// fn double(x: i32) -> i32 { x * 2 }
///
/// #[test]
/// fn doubles_in_a_worker() {
///     let rt = plait::Runtime::new().unwrap();
///     assert_eq!(rt.spawn_process(double::task(), 21).join().unwrap(), 42);
/// }
/// ```
#[macro_export]
macro_rules! test_worker {
    () => {
        #[test]
        fn __plait_worker__() {
            $crate::init();
        }
    };
}
