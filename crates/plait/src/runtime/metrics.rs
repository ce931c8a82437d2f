//! [`RuntimeMetrics`]: a runtime's load, strand by strand, as named numbers.

use super::Runtime;
use crate::Strand;
use crate::strand::StrandState;

/// A snapshot of a runtime's load, strand by strand: what a dashboard shows, or a queue's
/// worker reports to decide how much more to take. Taken by [`Runtime::metrics`].
///
/// The numbers are read one after another while tasks start and finish, so they are each
/// true at some instant of the call rather than all at one. A task leaves `in_flight` just
/// after its handle receives the result: right after a `join` it may still count for an
/// instant.
///
/// # Examples
///
/// ```
/// let rt = plait::Runtime::builder().threads(2).build()?;
/// let handle = rt.spawn(|| 6 * 7);
/// let metrics = rt.metrics();
/// assert_eq!(metrics.thread.workers, 2);
/// assert!(metrics.thread.in_flight <= 1);
/// assert_eq!(metrics.thread.queue_bound, plait::DEFAULT_QUEUE_BOUND);
/// assert_eq!(handle.join()?, 42);
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// The thread strand; its `workers` are the pool's threads.
    pub thread: StrandMetrics,
    /// The coroutine strand; its `workers` are the threads that poll coroutines.
    pub coroutine: StrandMetrics,
    /// The process strand; its `workers` are the worker processes it keeps (started on its
    /// first task).
    pub process: StrandMetrics,
    /// Spare threads running now in the place of pool threads blocked in a wait (a join, a
    /// scope's end): beyond `thread.workers` while tasks wait for tasks.
    pub spare_threads: usize,
    /// Worker processes started so far, replacements for crashed, timed-out and recycled
    /// workers included.
    pub process_workers_started: usize,
}

/// One strand's load: a part of [`RuntimeMetrics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StrandMetrics {
    /// Tasks admitted and not yet finished: queued, running, or waiting.
    pub in_flight: usize,
    /// Of those, tasks waiting for other tasks (a join, an await of a handle, a scope's
    /// end), whose slots the queue bound does not count meanwhile: `in_flight` may exceed
    /// `queue_bound` by as many.
    pub waiting_for_tasks: usize,
    /// The most unfinished tasks the strand holds (see
    /// [`Builder::queue_bound`](crate::Builder::queue_bound)).
    pub queue_bound: usize,
    /// The strand's workers: threads, or worker processes.
    pub workers: usize,
}

impl StrandMetrics {
    fn of(state: &StrandState, workers: usize) -> Self {
        StrandMetrics {
            in_flight: state.admission.in_flight(),
            waiting_for_tasks: state.admission.released_total(),
            queue_bound: state.admission.bound(),
            workers,
        }
    }
}

impl RuntimeMetrics {
    /// The metrics of `strand`; `None` for [`Strand::Auto`], which runs on the others.
    #[must_use]
    pub fn strand(&self, strand: Strand) -> Option<&StrandMetrics> {
        match strand {
            Strand::Thread => Some(&self.thread),
            Strand::Coroutine => Some(&self.coroutine),
            Strand::Process => Some(&self.process),
            Strand::Auto => None,
        }
    }

    /// Tasks in flight on all strands together.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.thread.in_flight + self.coroutine.in_flight + self.process.in_flight
    }
}

impl Runtime {
    /// A snapshot of the runtime's load, strand by strand: tasks in flight, tasks waiting
    /// for tasks, the bounds and the workers. Cheap (a few atomic loads per strand; no
    /// lock), for monitoring.
    #[must_use]
    pub fn metrics(&self) -> RuntimeMetrics {
        let shared = &self.shared;
        RuntimeMetrics {
            thread: StrandMetrics::of(&shared.threads.state, shared.threads.threads()),
            coroutine: StrandMetrics::of(&shared.coroutines.state, shared.coroutines.workers()),
            process: StrandMetrics::of(&shared.processes.state, shared.processes.workers()),
            spare_threads: shared.threads.pool().spare_threads(),
            process_workers_started: shared.processes.workers_started(),
        }
    }
}
