//! The process strand: tasks in worker processes, for isolation and hard limits.
//!
//! A thread or a coroutine shares the program's memory, so a task that crashes, leaks or
//! hangs takes the program with it. A process task runs in a worker process: a crash
//! there costs one worker (replaced at once) and fails that one task; a time limit or a
//! memory cap is enforced by the kernel; a leak ends when the worker is recycled.
//!
//! * `#[plait::task]` on a function registers it by name, so that a worker can run it.
//! * [`Runtime::spawn_process`](crate::Runtime::spawn_process): one task, the same [`Handle`](crate::Handle) as the other strands.
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
//!   without one; a graph's command node, the thread that runs it), so none is left a
//!   zombie, even when the runtime that started it is gone: after `shutdown` or a drop
//!   returns, every worker and command has been killed and reaped, and everything in
//!   their groups has been sent SIGKILL (those are not plait's children; their new
//!   parent, init, reaps them).
//! * **If the program dies outright** (SIGKILL, the OOM killer), its *keeper* kills every
//!   group still running, within milliseconds (measured here: about 2 ms, beside two busy
//!   loops). The keeper is this program's executable run afresh (it holds none of the
//!   program's memory), caught before `main` by a constructor plait installs, so it needs
//!   no `plait::init`; it shows as `plait-keeper` in `ps`, starts the first time the
//!   program starts a process, and lives as long as the program, in a process group of its
//!   own, deaf to the terminal's signals. Its input is a socket whose other end the program
//!   holds: the program's death is the end of its input. It learns of the groups from a
//!   table in memory that the program writes and it reads only then, so starting a
//!   process does not wake it (the socket carries what the table cannot hold). One
//!   killed by someone else is replaced the next time the program starts a process. If
//!   none can start, processes still start, and a warning says that this one guarantee is
//!   off. (Workers also die by their parent-death signal.)
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
//! * almost never, a process started in the instant before plait notes its group for the
//!   keeper (the process id is not known before the start). Its row in the table holds
//!   the launch's number until then, and the process carries this program's token and
//!   that number in its environment (`PLAIT_LAUNCH`); a keeper that finds such a row
//!   looks through `/proc` for the process and kills its group. What still escapes: one
//!   that has not reached its `exec` two seconds after the program died, or one that
//!   `exec`s again with a cleared environment before the keeper's first look (a few
//!   milliseconds), or one started while the table was full (4,096 groups at once) or
//!   could not be written. (Before the search, a test that kills its program the moment a
//!   command has run its first line, beside busy loops, saw the command outlive it about
//!   once in thirty tries; a test now holds that moment open for seconds.)
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
//! | panics | [`Error::Panicked`](crate::Error::Panicked) | the worker goes on |
//! | aborts, segfaults, calls `exit`, is OOM-killed | [`Error::WorkerLost`](crate::Error::WorkerLost) with the signal or status and what the task wrote to standard error | replaces the worker; the tasks queued behind go to other workers |
//! | runs past its [time limit](crate::TaskBuilder::timeout) | [`Error::TimedOut`](crate::Error::TimedOut) | kills and replaces the worker |
//! | allocates past the [memory cap](ProcessOptions::memory_limit) | [`Error::MemoryLimit`](crate::Error::MemoryLimit) | replaces the worker |
//! | is given arguments of another type (by name) | [`Error::Codec`](crate::Error::Codec) naming both types | the worker goes on |
//! | is cancelled while running | [`Error::Cancelled`](crate::Error::Cancelled) | kills and replaces the worker |
//! | answers with a frame that does not decode | [`Error::Codec`](crate::Error::Codec) naming the task | kills and replaces the worker |
//! | returns a result that does not decode as its type | [`Error::Codec`](crate::Error::Codec) naming the task | the worker goes on |
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
//! [`Error::MemoryLimit`](crate::Error::MemoryLimit) is decided from facts, not from what a worker printed last: the
//! cap was set, the worker aborted, and Rust's allocator reported a failed allocation while
//! that task ran (at the end of a line of what the task wrote to standard error since it
//! started, whatever came before and whatever backtrace follows). A task that prints those
//! words and dies another way is [`Error::WorkerLost`](crate::Error::WorkerLost); one that prints them and aborts
//! itself is taken at its word. [`Error::WorkerLost`](crate::Error::WorkerLost) carries what the lost task wrote to
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
mod call;
mod capture;
mod child;
mod codec;
pub mod command;
mod feeder;
mod keeper;
mod last_words;
pub(crate) mod map;
mod options;
mod outbox;
pub(crate) mod polled;
mod pool;
mod program;
mod registry;
mod remote;
mod slot;
mod spawn;
mod strand;
mod supervisor;
mod worker;

pub use crate::error::WorkerExit;
pub use args::EncodedArgs;
pub(crate) use args::{decode_output, encode_args};
pub(crate) use call::Call;
pub use command::{
    Command, CommandError, CommandOutput, LONGEST_LINE, LineSink, Stream, run_command,
};
pub use map::{MapProcess, MapProcessUnordered};
pub use options::{DEFAULT_PAYLOAD_LIMIT, ProcessOptions};
pub use registry::{Registration, Task, registered_tasks, run_by_name_json, task_version};
pub(crate) use strand::ProcessStrand;
pub use worker::{WORKER_TEST_NAME, init};
