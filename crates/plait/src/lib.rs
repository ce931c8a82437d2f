//! plait: threads, coroutines and processes behind one task API.
//!
//! Python programmers meet concurrency as three models (processes, threads, coroutines)
//! and a rule of thumb for choosing among them. plait is that system in Rust, where the rule
//! changes: threads have no global interpreter lock, so they take CPU-bound work on every
//! core; coroutines take I/O-bound waits by the ten thousand; processes are for isolation.
//!
//! | strand | spawn | for | built on |
//! |---|---|---|---|
//! | thread | [`Runtime::spawn`], [`scope`](Runtime::scope), [`join`](Runtime::join), [`map`](Runtime::map) | CPU-bound work | a work-stealing pool on `crossbeam-deque` |
//! | coroutine | [`Runtime::spawn_async`], [`map_async`](Runtime::map_async), [`block_on`](Runtime::block_on) | I/O-bound waits | `tokio`'s multi-threaded runtime |
//! | process | [`Runtime::spawn_process`], [`map_process`](Runtime::map_process), [`spawn_command`](Runtime::spawn_command) | isolation: crashes, leaks, hangs, hard limits | worker processes (the program run afresh, tasks registered with [`#[plait::task]`](macro@task)), and commands in process groups of their own |
//!
//! [`Strand::Auto`] chooses among them by measuring the work ([`Runtime::spawn_on`]);
//! [`graph`] runs task graphs across all three; [`advise`] says which strand a workload
//! wants, from measurements.
//!
//! Whichever strand runs a task, you get the same [`Handle`]: [`join`](Handle::join) it from
//! synchronous code or `.await` it from async code, [`cancel`](Handle::cancel) it, give it a
//! [time limit](TaskBuilder::timeout). Failures are values: a panic in a task becomes
//! [`Error::Panicked`] on its handle, never a crash of the runtime, never a silent loss.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! let rt = plait::Runtime::new()?;
//!
//! // CPU-bound: a parallel map on the thread strand, lazy and batched.
//! let primes = rt
//!     .map(2..20_000u64, |n| (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0))
//!     .filter(|is_prime| *is_prime.as_ref().unwrap())
//!     .count();
//! assert_eq!(primes, 2262);
//!
//! // I/O-bound: a thousand concurrent waits on the coroutine strand.
//! let waits = rt.map_async(0..1000, 1000, |_| tokio::time::sleep(Duration::from_millis(10)));
//! assert_eq!(waits.into_iter().filter(Result::is_ok).count(), 1000);
//!
//! // Tasks that fail together.
//! let mut group = rt.group();
//! group.spawn(|| Ok::<_, std::io::Error>(1));
//! group.spawn_async(async { Ok::<_, std::io::Error>(2) });
//! assert_eq!(group.join_all()?, [1, 2]);
//!
//! println!("{}", rt.shutdown(Duration::from_secs(1)));
//! # Ok::<(), plait::Error>(())
//! ```
//!
//! # Cancellation, in one place
//!
//! * A task that has not started never starts once cancelled.
//! * A coroutine is dropped at its next `.await`.
//! * A thread task cannot be killed (no thread can be, safely): it sees
//!   [`task::is_cancelled`] turn `true` and should return early.
//! * [`Handle::cancel`] returning `true` and the handle reporting [`Error::Cancelled`] are the
//!   same event: a cancelled task's late value is dropped, never half-reported.
//! * Dropping a [`Handle`] detaches the task; dropping a [`TaskGroup`] cancels its tasks.
//!
//! See [`sync`] for which channel, lock or semaphore to use from which strand.

#![warn(missing_docs)]

// `#[plait::task]` expands to paths under `::plait`, which must resolve inside this crate
// too (for its built-in tasks and tests).
extern crate self as plait;

// The modules form a stack, bottom first; a module imports only its own layer and those
// below. docs/architecture.md says what each layer is; tests/layers.rs holds the code to it.

// 1: the error type, task ids, the loom shim.
mod error;
mod id;
mod loom;
// 2: what a strand is, and its state (its bound, whether it takes tasks, its tally).
mod strand;
// 3: the thread strand's scheduler, which runs type-erased jobs.
mod pool;
// 4: the task core: completion, the current task, handles, waiting.
pub mod task;
// 5: the strands' engines, synchronisation across strands, measurement.
pub mod advise;
pub mod coroutine;
pub mod process;
pub mod sync;
pub mod thread;
// 6: the facade that owns the strands.
mod runtime;
// 7: task graphs.
pub mod graph;

pub use coroutine::{sleep, timeout};
pub use error::{BoxError, Error, Result, SharedError, SpawnError};
/// Registers a function as a task that worker processes can run: see
/// [`process`] and [`Runtime::spawn_process`].
pub use plait_macros::task;
pub use process::init;
pub use runtime::{
    Builder, DEFAULT_QUEUE_BOUND, Runtime, RuntimeMetrics, ShutdownReport, StrandMetrics,
    StrandReport, TaskBuilder, TaskGroup, spawn, spawn_async,
};
pub use strand::Strand;
pub use task::{CancelHandle, Handle, TaskId, as_completed};

/// What `#[plait::task]` expands to needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}

/// The examples in README.md, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
