//! The thread strand's pool: worker threads with work-stealing deques (`crossbeam-deque`),
//! and the scheduling around them.
//!
//! Each worker owns a LIFO deque; tasks spawned from outside go to a shared injector, from
//! which workers take batches. An idle worker searches (spins, stealing) before it sleeps,
//! and wake-ups are rationed (see `sleep.rs`). A queue entry is the task's own reference
//! counted core, so a spawn allocates once.
//!
//! A pool thread that waits for tasks (a join, a scope) runs what it waits for if that is
//! still queued among the top entries of its own deque ([`help_with`]); otherwise it blocks
//! and has a spare thread take its place ([`cover_blocking`], `spare.rs`), so tasks that wait
//! for tasks neither exhaust the pool nor run on top of a task that waits for them. A spare
//! works as a worker does, with a deque of its own.

pub(crate) mod fork;
pub(crate) mod job;
mod latch;
pub(crate) mod raw;
mod sleep;
mod spare;

use std::cell::{Cell, OnceCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::Backoff;

use self::fork::ForkRef;
use self::job::{Entry, JobRef, Kind};
use self::sleep::Sleep;
use self::spare::{Cover, MAX_SPARES, Spares};
use crate::error::report_unobserved;
use crate::strand::StrandState;
use crate::{Error, Result};

/// Below this much stack left, a helping thread runs the helped task on a fresh stack
/// segment, so waits nested thousands deep cannot overflow the stack.
const HELP_RED_ZONE: usize = 128 * 1024;

/// The size of each fresh stack segment.
const HELP_STACK: usize = 2 * 1024 * 1024;

/// How deep into its own deque a waiting thread looks for what it waits for: enough for a
/// task that spawned a batch and joins it in order, cheap enough to do at each wake-up.
const SCAN: usize = 32;

/// What the pool needs from the runtime to run a task.
pub(crate) struct Context {
    /// The thread strand's state: cancellation during shutdown, and finished tasks.
    pub(crate) strand: Arc<StrandState>,
}

/// How to start the pool's threads.
pub(crate) struct Options {
    pub(crate) threads: usize,
    pub(crate) name: String,
    pub(crate) stack_size: Option<usize>,
    /// Run first on every pool thread, spares included (the runtime tells its threads
    /// which runtime they serve).
    pub(crate) on_start: Option<OnStart>,
}

/// A hook run as each pool thread starts.
pub(crate) type OnStart = Arc<dyn Fn() + Send + Sync>;

pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    injector: Injector<JobRef>,
    stealers: Box<[Stealer<JobRef>]>,
    /// The deques of the spares alive, by slot. Read only by threads looking for work, and
    /// only while some slot is set.
    spare_stealers: RwLock<Vec<Option<Stealer<JobRef>>>>,
    /// How many slots of `spare_stealers` are set.
    spares_shown: AtomicUsize,
    sleep: Sleep,
    spares: Spares,
    context: Context,
    /// How to name, size and start spare threads.
    name: String,
    stack_size: Option<usize>,
    on_start: Option<OnStart>,
}

/// A pool thread's own view of its pool.
struct Local {
    /// Its slot among sleepers: workers first, then spares by slot.
    index: usize,
    deque: Worker<JobRef>,
    /// For a spare, its slot in `spare_stealers`.
    spare: Option<usize>,
    /// A spare whose thread is ending: what it spawns now goes to the injector.
    gone: Cell<bool>,
    shared: Arc<Shared>,
}

/// Why a pool thread's work loop returned.
enum Stop {
    Terminated,
    /// A spare found more spares working than threads blocked.
    Surplus,
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
            spare_stealers: RwLock::new(Vec::new()),
            spares_shown: AtomicUsize::new(0),
            sleep: Sleep::new(options.threads + MAX_SPARES),
            spares: Spares::new(),
            context,
            name: options.name.clone(),
            stack_size: options.stack_size,
            on_start: options.on_start.clone(),
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
                spare: None,
                gone: Cell::new(false),
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

    /// Spare threads working in the place of blocked pool threads now.
    pub(crate) fn spare_threads(&self) -> usize {
        self.shared.spares.active()
    }

    /// Whether the current thread is one of this pool's (a worker or a spare).
    pub(crate) fn is_current(&self) -> bool {
        WORKER.with(|worker| {
            worker
                .get()
                .is_some_and(|local| Arc::ptr_eq(&local.shared, &self.shared))
        })
    }

    /// Runs `a` here and `b` wherever a thread takes it, if the current thread is one of this
    /// pool's: `b` waits in this thread's deque, without a heap allocation, and is usually
    /// popped back and run here (see `fork.rs`). Hands both back otherwise.
    #[allow(clippy::type_complexity)]
    pub(crate) fn join_on_worker<A, B, RA, RB>(
        &self,
        a: A,
        b: B,
        wait: fork::WaitForThief<'_>,
    ) -> std::result::Result<Result<(RA, RB)>, (A, B)>
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        WORKER.with(|worker| match worker.get() {
            Some(local) if Arc::ptr_eq(&local.shared, &self.shared) && !local.gone.get() => {
                Ok(fork::join(local, a, b, wait))
            }
            _ => Err((a, b)),
        })
    }

    /// Queues a job: on the current worker's own deque if this is one of the pool's
    /// threads, otherwise on the shared injector.
    pub(crate) fn push(&self, job: JobRef) {
        let job = WORKER.with(|worker| match worker.get() {
            Some(local) if Arc::ptr_eq(&local.shared, &self.shared) && !local.gone.get() => {
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

    /// Takes every job still queued and runs it here, which, the strand being cancelled,
    /// drops its body unrun and books it: so that a shutdown counts queued tasks as
    /// cancelled even while every pool thread is held by a task that ignores the request.
    /// Returns how many it took.
    pub(crate) fn drain_cancelled(&self) -> usize {
        debug_assert!(self.shared.context.strand.is_cancelling());
        let mut count = 0;
        loop {
            // Dropping a body may queue more (a nested spawn in a destructor): until none.
            let taken = self.shared.take_queued();
            if taken.is_empty() {
                return count;
            }
            count += taken.len();
            for job in taken {
                execute(&self.shared.context, job);
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Workers finish what is queued (a runtime that is going away has told its tasks to
        // skip themselves), then exit; they are not joined, as this may run on one of them.
        self.shared.sleep.terminate();
        self.shared.spares.terminate();
    }
}

impl Shared {
    /// Steals every queued job: the injector's, the workers' and the spares'.
    fn take_queued(&self) -> Vec<JobRef> {
        fn steal_all(stealer: impl Fn() -> Steal<JobRef>, taken: &mut Vec<JobRef>) {
            loop {
                match stealer() {
                    Steal::Success(job) => taken.push(job),
                    Steal::Retry => {}
                    Steal::Empty => return,
                }
            }
        }
        let mut taken = Vec::new();
        steal_all(|| self.injector.steal(), &mut taken);
        for stealer in self.stealers.iter() {
            steal_all(|| stealer.steal(), &mut taken);
        }
        // Taken under the lock, run by the caller outside it: a body's destructor is user
        // code.
        self.with_spare_stealers(|stealers| {
            for stealer in stealers.iter().flatten() {
                steal_all(|| stealer.steal(), &mut taken);
            }
        });
        taken
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
            || self.with_spare_stealers(|stealers| stealers.iter().flatten().any(|s| !s.is_empty()))
    }

    /// Calls `f` with the spares' deques, by slot; with none if no spare is alive.
    fn with_spare_stealers<R: Default>(
        &self,
        f: impl FnOnce(&[Option<Stealer<JobRef>>]) -> R,
    ) -> R {
        if self.spares_shown.load(Ordering::Acquire) == 0 {
            return R::default();
        }
        f(&self
            .spare_stealers
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Shows `stealer` (or, with `None`, nothing) as spare `slot`'s deque; returns what the
    /// slot showed before.
    fn set_spare_stealer(
        &self,
        slot: usize,
        stealer: Option<Stealer<JobRef>>,
    ) -> Option<Stealer<JobRef>> {
        let mut stealers = self
            .spare_stealers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if stealers.len() <= slot {
            stealers.resize_with(slot + 1, || None);
        }
        let shown = stealer.is_some();
        let before = std::mem::replace(&mut stealers[slot], stealer);
        match (before.is_some(), shown) {
            (false, true) => self.spares_shown.fetch_add(1, Ordering::Release),
            (true, false) => self.spares_shown.fetch_sub(1, Ordering::Release),
            _ => 0,
        };
        before
    }
}

impl Local {
    fn main(self) {
        if let Some(start) = &self.shared.on_start {
            start();
        }
        WORKER.with(|worker| {
            if worker.set(self).is_err() {
                return;
            }
            if let Some(local) = worker.get() {
                local.work();
            }
        });
    }

    /// A spare thread's life: work while blocked threads need it, idle in between.
    fn spare_main(self) {
        if let Some(start) = &self.shared.on_start {
            start();
        }
        WORKER.with(|worker| {
            if worker.set(self).is_err() {
                return;
            }
            let Some(local) = worker.get() else { return };
            let Some(slot) = local.spare else { return };
            // However the thread ends, its slot and its deque go.
            let _slot = Slot { local, slot };
            let spares = &local.shared.spares;
            loop {
                // Should the loop unwind, the books still count this spare out.
                let active = Active(spares);
                match local.work() {
                    Stop::Terminated => return,
                    Stop::Surplus => {
                        std::mem::forget(active);
                        if !spares.retire() {
                            return;
                        }
                    }
                }
            }
        });
    }

    fn work(&self) -> Stop {
        let sleep = &self.shared.sleep;
        let spare = self.spare.is_some();
        let mut searching = false;
        'work: loop {
            // A spare no longer needed leaves between tasks, with its own deque empty. One
            // woken to search leaves too, handing the search on as a searcher that found
            // work does, so that work a spawner left to it reaches a worker.
            if spare && self.deque.is_empty() && self.shared.spares.surplus() {
                if searching {
                    sleep.stop_searching();
                }
                return Stop::Surplus;
            }
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
            if spare && self.shared.spares.surplus() {
                // Retires rather than sleep among the workers (its deque is empty: it found
                // no work).
                sleep.stop_searching();
                return Stop::Surplus;
            }
            if !sleep.sleep(self.index, || self.shared.has_work()) {
                return Stop::Terminated;
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
            // A worker starts after its own deque; a spare tries every worker's.
            let first = usize::from(self.spare.is_none());
            for offset in first..stealers.len() {
                match stealers[(self.index + offset) % stealers.len()].steal() {
                    Steal::Success(job) => return Some(job),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            let from_spares = self.shared.with_spare_stealers(|stealers| {
                let mut retry = false;
                for (slot, stealer) in stealers.iter().enumerate() {
                    let Some(stealer) = stealer else { continue };
                    if self.spare == Some(slot) {
                        continue;
                    }
                    match stealer.steal() {
                        Steal::Success(job) => return (Some(job), retry),
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
                }
                (None, retry)
            });
            match from_spares {
                (Some(job), _) => return Some(job),
                (None, true) => retry = true,
                (None, false) => {}
            }
            if !retry {
                return None;
            }
        }
    }

    fn execute(&self, job: JobRef) {
        execute(&self.shared.context, job);
    }
}

fn execute(context: &Context, job: JobRef) {
    // A task's own panics are caught in its core; this catches a panicking destructor of a
    // task's value, which must not take the thread down.
    if let Err(message) = crate::error::catch_panic(|| run(job, context)) {
        tracing::error!(%message, "a thread-strand job panicked outside its task");
    }
}

/// Runs one job and counts it finished.
fn run(job: JobRef, context: &Context) {
    let cancelling = || context.strand.is_cancelling();
    let (job, kind) = match job.into_entry() {
        Entry::Task(job, kind) => (job, kind),
        Entry::Forked(header) => {
            // The joiner waits for it itself; nothing to book.
            let _holding = crate::strand::hold_no_slot();
            // SAFETY: `fork.rs` queued this header as a `ForkRef`'s; the entry was taken from
            // a queue, once, and is not touched again.
            unsafe { ForkRef::from_header(header.cast()).execute(cancelling()) };
            return;
        }
    };
    match kind {
        Kind::Admitted => {
            // Booked as finished even if a destructor in the task unwinds: a lost slot
            // would hold the strand's bound and its shutdown forever.
            let mut finish = Finish {
                strand: &context.strand,
                cancelled: false,
            };
            let id = job.id();
            // The task holds a slot of the strand: it releases it while it waits for tasks.
            let holding = context.strand.hold_slot();
            let ran = job.run(&cancelling);
            drop(holding);
            if let Some(error) = &ran.unobserved_panic {
                report_unobserved(id, error);
            }
            finish.cancelled = ran.cancelled;
        }
        Kind::Scoped(guard) => {
            let _holding = crate::strand::hold_no_slot();
            let ran = job.run(&cancelling);
            if let Some(error) = ran.unobserved_panic {
                guard.record(error);
            }
            // `guard` drops here, after the job: the scope may now end.
        }
        Kind::Joined => {
            // The joiner waits for completion itself; nothing to book.
            let _holding = crate::strand::hold_no_slot();
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

/// On a pool thread, runs a job that `wanted` says the caller waits for, if one is among the
/// top [`SCAN`] entries of the thread's own deque; returns whether it ran one. Left-over
/// entries met on the way (tasks claimed already) are done with; the others go back in
/// their order. Deep chains of waits move to fresh stack segments instead of overflowing.
pub(crate) fn help_with(wanted: &dyn Fn(&JobRef) -> bool) -> bool {
    WORKER.with(|worker| {
        let Some(local) = worker.get() else {
            return false;
        };
        let deque = &local.deque;
        // Popping and pushing back is the deque's way to look below its top.
        let mut above = Vec::new();
        let mut found = None;
        while above.len() < SCAN {
            let Some(job) = deque.pop() else { break };
            if job.is_left_over() {
                // Runs no user code: only counts the entry finished.
                local.execute(job);
                continue;
            }
            if wanted(&job) {
                found = Some(job);
                break;
            }
            above.push(job);
        }
        if !above.is_empty() {
            for job in above.into_iter().rev() {
                deque.push(job);
            }
            // A thread that looked for work while these were out of sight may have gone to
            // sleep: someone must see them again.
            local.shared.sleep.notify();
        }
        match found {
            Some(job) => {
                stacker::maybe_grow(HELP_RED_ZONE, HELP_STACK, || local.execute(job));
                true
            }
            None => false,
        }
    })
}

/// On a pool thread that is about to block, has a spare thread take its place until the
/// returned guard drops. If no spare can be had, the guard says the caller must
/// [`help`] instead.
pub(crate) fn cover_blocking() -> BlockingCover {
    WORKER.with(|worker| {
        let Some(local) = worker.get() else {
            return BlockingCover(Coverage::NotPoolThread);
        };
        let shared = &local.shared;
        match shared.spares.cover() {
            Cover::Running => {}
            Cover::Start { slot } => {
                if let Err(error) = start_spare(shared, slot) {
                    tracing::warn!(%error, "could not start a spare pool thread; waits help instead");
                    shared.set_spare_stealer(slot, None);
                    shared.spares.not_started(slot);
                    return BlockingCover(Coverage::NoSpare);
                }
            }
            Cover::Refused => return BlockingCover(Coverage::NoSpare),
        }
        // The deque of the thread that blocks may hold work: someone awake must see it.
        shared.sleep.notify();
        BlockingCover(Coverage::Spare(Arc::clone(shared)))
    })
}

/// Starts a spare in `slot`, with a deque of its own that the other threads can steal from.
fn start_spare(shared: &Arc<Shared>, slot: usize) -> std::io::Result<()> {
    let deque = Worker::new_lifo();
    // The slot is free: its last spare cleared its deque before giving the slot back.
    shared.set_spare_stealer(slot, Some(deque.stealer()));
    let mut builder = std::thread::Builder::new().name(format!("{}-spare-{slot}", shared.name));
    if let Some(bytes) = shared.stack_size {
        builder = builder.stack_size(bytes);
    }
    let local = Local {
        index: shared.stealers.len() + slot,
        deque,
        spare: Some(slot),
        gone: Cell::new(false),
        shared: Arc::clone(shared),
    };
    builder.spawn(move || local.spare_main()).map(drop)
}

/// Counts an active spare out of the books when dropped.
struct Active<'a>(&'a Spares);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.exit_active();
    }
}

/// A spare's slot: when its thread ends, its deque leaves the others' view, and only then is
/// the slot free for another spare. The deque is empty unless the spare's loop unwound:
/// then what is left moves to the injector, where any thread finds it.
struct Slot<'a> {
    local: &'a Local,
    slot: usize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let shared = &self.local.shared;
        self.local.gone.set(true);
        if let Some(deque) = shared.set_spare_stealer(self.slot, None) {
            let mut moved = false;
            loop {
                match deque.steal() {
                    Steal::Success(job) => {
                        shared.injector.push(job);
                        moved = true;
                    }
                    Steal::Retry => {}
                    Steal::Empty => break,
                }
            }
            if moved {
                shared.sleep.notify();
            }
        }
        shared.spares.release(self.slot);
    }
}

/// A spare thread in the place of a pool thread that blocks; the spare may retire when the
/// guard drops.
#[must_use = "the spare covers the blocked thread until the guard drops"]
pub(crate) struct BlockingCover(Coverage);

enum Coverage {
    /// The caller is not a pool thread: no spare is needed and it may simply block.
    NotPoolThread,
    /// A spare works in the caller's place.
    Spare(Arc<Shared>),
    /// No spare could be had.
    NoSpare,
}

impl BlockingCover {
    /// Whether the caller is a pool thread that no spare covers: it must [`help`] while it
    /// waits, or the pool may starve.
    pub(crate) fn must_help(&self) -> bool {
        matches!(self.0, Coverage::NoSpare)
    }
}

impl Drop for BlockingCover {
    fn drop(&mut self) {
        if let Coverage::Spare(shared) = &self.0 {
            shared.spares.unblocked();
        }
    }
}

/// On a pool thread, runs one queued task of its pool; returns whether there was one.
///
/// Only for a wait that no spare covers: the task run may be one that waits for the task
/// below it on this stack. Deep chains of helping move to fresh stack segments instead of
/// overflowing.
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

/// Whether the current thread is a thread (a worker or a spare) of some pool.
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
