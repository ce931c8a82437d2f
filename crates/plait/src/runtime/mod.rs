//! [`Runtime`]: the three models of concurrency behind one task API.

pub(crate) mod auto;
mod builder;
mod coroutine;
mod current;
mod group;
mod metrics;
mod process;
mod shutdown;
mod task_builder;
mod thread;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use builder::{Builder, DEFAULT_QUEUE_BOUND};
pub use current::{spawn, spawn_async};
pub use group::TaskGroup;
pub use metrics::{RuntimeMetrics, StrandMetrics};
pub use shutdown::{ShutdownReport, StrandReport};
pub use task_builder::TaskBuilder;

use crate::Result;
use crate::coroutine::CoroutineStrand;
use crate::process::ProcessStrand;
use crate::thread::ThreadStrand;

/// Owns the strands and runs tasks on them.
///
/// * **Thread strand** (CPU-bound work): [`spawn`](Runtime::spawn), [`scope`](Runtime::scope),
///   [`join`](Runtime::join), [`map`](Runtime::map), [`map_unordered`](Runtime::map_unordered).
/// * **Coroutine strand** (I/O-bound work): [`spawn_async`](Runtime::spawn_async),
///   [`map_async`](Runtime::map_async), [`block_on`](Runtime::block_on).
/// * **Process strand** (isolation): [`spawn_process`](Runtime::spawn_process),
///   [`map_process`](Runtime::map_process), [`spawn_command`](Runtime::spawn_command).
/// * **Any strand**: [`spawn_on`](Runtime::spawn_on) (with [`Strand::Auto`](crate::Strand::Auto),
///   the one that fits), [`task`](Runtime::task) (options such as a time limit),
///   [`group`](Runtime::group) (tasks that fail together), [`metrics`](Runtime::metrics),
///   [`shutdown`](Runtime::shutdown).
///
/// Every spawn returns the same [`Handle`](crate::Handle), with the same errors and
/// cancellation, whichever strand runs the task.
///
/// A `Runtime` is a cheap handle: clones share the same strands, and tasks may capture one
/// to spawn more work. Call [`shutdown`](Runtime::shutdown) to let in-flight work finish
/// and learn what happened to it. When the last clone is dropped without a shutdown, work
/// still in flight is cancelled without waiting for it to finish (and a warning is logged
/// through `tracing`): a program that returns from `main` does not wait for detached
/// tasks. The drop does wait for the processes the runtime started (workers, commands) to
/// be killed and reaped: at most 2 s for the workers and 2 s for the commands, longer only
/// for a process that cannot die (stuck in an uninterruptible wait; it is left to a thread
/// that reaps it later, after 2 s). Dropped inside an async context, where it may not
/// block, it leaves the coroutine strand's threads to kill the commands just after.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = plait::Runtime::builder().threads(2).build()?;
/// let cpu = rt.spawn(|| (1..=20u64).product::<u64>());
/// let io = rt.spawn_async(async {
///     tokio::time::sleep(Duration::from_millis(5)).await;
///     "waited"
/// });
/// assert_eq!(cpu.join()?, 2_432_902_008_176_640_000);
/// assert_eq!(io.join()?, "waited");
/// let report = rt.shutdown(Duration::from_secs(1));
/// assert!(report.is_clean());
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    /// Where `Strand::Auto` sends each closure type.
    pub(crate) auto: Arc<auto::Router>,
    pub(crate) threads: Arc<ThreadStrand>,
    pub(crate) coroutines: Arc<CoroutineStrand>,
    pub(crate) processes: Arc<ProcessStrand>,
    /// Turned `true` when a shutdown begins (see [`Runtime::closing`]).
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    /// Where its threads find it (see [`Runtime::current`]).
    pub(crate) home: current::Home,
}

/// How long dropping a runtime waits for its worker processes, and then for its coroutines
/// (which hold its commands), to be killed and reaped.
const REAP: Duration = Duration::from_secs(2);

impl Runtime {
    /// Starts a [`Builder`] to configure a runtime.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Builds a runtime with the defaults: one thread per core, one coroutine worker per
    /// core, and the default queue bound.
    ///
    /// # Errors
    ///
    /// [`Error::Build`](crate::Error::Build) if the operating system refuses to start the
    /// threads.
    pub fn new() -> Result<Runtime> {
        Builder::new().build()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let strands = [
            &self.threads.state,
            &self.coroutines.state,
            &self.processes.state,
        ];
        if strands.iter().all(|state| state.is_closed()) {
            return;
        }
        let (threads, coroutines, processes) = (
            self.threads.state.admission.in_flight(),
            self.coroutines.state.admission.in_flight(),
            self.processes.state.admission.in_flight(),
        );
        if threads + coroutines + processes > 0 {
            tracing::warn!(
                threads,
                coroutines,
                processes,
                "runtime dropped with tasks in flight; they are cancelled. \
                 Call Runtime::shutdown(timeout) to let them finish"
            );
        }
        for state in strands {
            state.close();
            state.cancel_all();
        }
        // Before the coroutines stop: the supervisors that reap the workers are coroutines.
        crate::task::wait::blocking_region(|| self.processes.stop(false, REAP));
        // Waits for the coroutines to be dropped (not run): a command's run, dropped, kills
        // and reaps its process group, which must be done when the drop returns.
        crate::task::wait::blocking_region(|| self.coroutines.stop(Some(REAP)));
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metrics = self.metrics();
        f.debug_struct("Runtime")
            .field("threads", &metrics.thread.workers)
            .field("coroutine_workers", &metrics.coroutine.workers)
            .field("threads_in_flight", &metrics.thread.in_flight)
            .field("coroutines_in_flight", &metrics.coroutine.in_flight)
            .field("process_workers", &metrics.process.workers)
            .field("processes_in_flight", &metrics.process.in_flight)
            .finish()
    }
}
