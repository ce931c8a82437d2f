//! The thread strand's pool: worker threads with work-stealing deques (`crossbeam-deque`),
//! and the scheduling around them.
//!
//! Each worker owns a LIFO deque; tasks spawned from outside go to a shared injector, from
//! which workers take batches. An idle worker searches (spins, stealing) before it sleeps,
//! and wake-ups are rationed (see `sleep.rs`). A queue entry is the task's own reference
//! counted core, so a spawn allocates once.
//!
//! A thread that waits for a task on a worker thread (a join, a scope) runs queued tasks
//! meanwhile ([`help`]), so tasks that wait for tasks cannot exhaust the pool.

pub(crate) mod job;
mod sleep;

use std::cell::OnceCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::Backoff;

use self::job::{JobRef, Kind};
use self::sleep::Sleep;
use crate::runtime::strand::StrandState;
use crate::task::handle::report_unobserved;
use crate::task::state::Reason;
use crate::{Error, Result};

/// Below this much stack left, a helping thread runs the helped task on a fresh stack
/// segment, so waits nested thousands deep cannot overflow the stack.
const HELP_RED_ZONE: usize = 128 * 1024;

/// The size of each fresh stack segment.
const HELP_STACK: usize = 2 * 1024 * 1024;

/// What the pool needs from the runtime to run a task.
pub(crate) struct Context {
    /// The thread strand's books: cancellation during shutdown, and finished tasks.
    pub(crate) strand: Arc<StrandState>,
    /// Where time limits of thread tasks are kept: the coroutine strand's timers.
    pub(crate) timers: tokio::runtime::Handle,
}

/// How to start the pool's threads.
pub(crate) struct Options {
    pub(crate) threads: usize,
    pub(crate) name: String,
    pub(crate) stack_size: Option<usize>,
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    injector: Injector<JobRef>,
    stealers: Box<[Stealer<JobRef>]>,
    sleep: Sleep,
    context: Context,
}

/// A worker thread's own view of its pool.
struct Local {
    index: usize,
    deque: Worker<JobRef>,
    shared: Arc<Shared>,
}

thread_local! {
    static WORKER: OnceCell<Local> = const { OnceCell::new() };
}

impl Pool {
    pub(crate) fn new(options: &Options, context: Context) -> Result<Pool> {
        let deques: Vec<Worker<JobRef>> =
            (0..options.threads).map(|_| Worker::new_lifo()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            sleep: Sleep::new(options.threads),
            context,
        });
        let pool = Pool {
            shared: Arc::clone(&shared),
        };
        for (index, deque) in deques.into_iter().enumerate() {
            let mut builder = std::thread::Builder::new().name(format!("{}-{index}", options.name));
            if let Some(bytes) = options.stack_size {
                builder = builder.stack_size(bytes);
            }
            let local = Local {
                index,
                deque,
                shared: Arc::clone(&shared),
            };
            // Dropping `pool` on failure terminates the threads already started.
            builder
                .spawn(move || local.main())
                .map_err(|error| Error::Build {
                    reason: format!(
                        "could not start pool thread {index} of {}: {error}",
                        options.threads
                    ),
                })?;
        }
        Ok(pool)
    }

    pub(crate) fn threads(&self) -> usize {
        self.shared.stealers.len()
    }

    /// Queues a job: on the current worker's own deque if this is one of the pool's
    /// threads, otherwise on the shared injector.
    pub(crate) fn push(&self, job: JobRef) {
        let job = WORKER.with(|worker| match worker.get() {
            Some(local) if Arc::ptr_eq(&local.shared, &self.shared) => {
                local.deque.push(job);
                None
            }
            _ => Some(job),
        });
        if let Some(job) = job {
            self.shared.injector.push(job);
        }
        self.shared.sleep.notify();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Workers finish what is queued (a runtime that is going away has told its tasks to
        // skip themselves), then exit; they are not joined, as this may run on one of them.
        self.shared.sleep.terminate();
    }
}

impl Shared {
    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }
}

impl Local {
    fn main(self) {
        WORKER.with(|worker| {
            if worker.set(self).is_err() {
                return;
            }
            if let Some(local) = worker.get() {
                local.work();
            }
        });
    }

    fn work(&self) {
        let sleep = &self.shared.sleep;
        let mut searching = false;
        'work: loop {
            if let Some(job) = self.find_work() {
                if searching {
                    sleep.stop_searching();
                    searching = false;
                }
                self.execute(job);
                continue;
            }
            if !searching {
                sleep.start_searching();
                searching = true;
            }
            let backoff = Backoff::new();
            while !backoff.is_completed() {
                backoff.snooze();
                if self.shared.has_work() {
                    continue 'work;
                }
            }
            if !sleep.sleep(self.index, || self.shared.has_work()) {
                return;
            }
        }
    }

    fn find_work(&self) -> Option<JobRef> {
        self.deque.pop().or_else(|| self.steal())
    }

    fn steal(&self) -> Option<JobRef> {
        let stealers = &self.shared.stealers;
        loop {
            let mut retry = false;
            match self.shared.injector.steal_batch_and_pop(&self.deque) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            for offset in 1..stealers.len() {
                match stealers[(self.index + offset) % stealers.len()].steal() {
                    Steal::Success(job) => return Some(job),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn execute(&self, job: JobRef) {
        let context = &self.shared.context;
        // A task's own panics are caught in its core; this catches a panicking destructor
        // of a task's value, which must not take the worker down.
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| run(job, context))) {
            let message = crate::error::panic_message(payload.as_ref());
            tracing::error!(%message, "a thread-strand job panicked outside its task");
        }
    }
}

/// Runs one job and does its books.
fn run(job: JobRef, context: &Context) {
    let cancelling = || context.strand.is_cancelling();
    let (job, kind) = job.into_parts();
    match kind {
        Kind::Admitted { limit } => {
            // Booked as finished even if a destructor in the task unwinds: a lost slot
            // would hold the strand's bound and its shutdown forever.
            let mut books = Finish {
                strand: &context.strand,
                cancelled: false,
            };
            let id = job.id();
            let timer = limit.map(|limit| {
                let task = Arc::clone(&job);
                context.timers.spawn(async move {
                    tokio::time::sleep(limit).await;
                    task.cancel(Reason::TimedOut);
                })
            });
            let ran = job.run(&cancelling);
            if let Some(timer) = timer {
                timer.abort();
            }
            if let Some(error) = &ran.unobserved_panic {
                report_unobserved(id, error);
            }
            books.cancelled = ran.cancelled;
        }
        Kind::Scoped(guard) => {
            let ran = job.run(&cancelling);
            if let Some(error) = ran.unobserved_panic {
                guard.record(error);
            }
            // `guard` drops here, after the job: the scope may now end.
        }
        Kind::Joined => {
            // The joiner waits for completion itself; nothing to book.
            job.run(&cancelling);
        }
    }
}

/// Books an admitted task as finished when dropped.
struct Finish<'a> {
    strand: &'a StrandState,
    cancelled: bool,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        self.strand.finish(self.cancelled);
    }
}

/// On a worker thread of any pool, runs one queued task of that pool; returns whether there
/// was one. Deep chains of helping move to fresh stack segments instead of overflowing.
pub(crate) fn help() -> bool {
    WORKER.with(|worker| match worker.get() {
        Some(local) => stacker::maybe_grow(HELP_RED_ZONE, HELP_STACK, || {
            let job = local.deque.pop().or_else(|| {
                let stolen = local.steal();
                // A steal may move a batch into this deque: while this thread runs the one
                // job and goes back to waiting, sleepers should take the rest.
                if stolen.is_some() && !local.deque.is_empty() {
                    local.shared.sleep.notify();
                }
                stolen
            });
            match job {
                Some(job) => {
                    local.execute(job);
                    true
                }
                None => false,
            }
        }),
        None => false,
    })
}

/// Whether the current thread is a worker of some pool (and so should help, not just
/// block, while it waits).
pub(crate) fn on_worker() -> bool {
    WORKER.with(|worker| worker.get().is_some())
}

/// Whether the current thread's pool is cancelling everything (its runtime is shutting
/// down).
pub(crate) fn strand_cancelling() -> bool {
    WORKER.with(|worker| {
        worker
            .get()
            .is_some_and(|local| local.shared.context.strand.is_cancelling())
    })
}
