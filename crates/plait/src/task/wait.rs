//! Blocking until a task completes, without deadlocking the thread pool or stalling a
//! coroutine worker.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use super::state::{self, Header};
use crate::pool::{self, job::JobRef};
use crate::strand::StrandState;
use crate::strand::admission::Waiting;

/// A pool thread that helps with any queued task while it waits (because no spare thread
/// covers it) parks at most this long before it looks again: a backstop for work that
/// arrives while it parks, which the pool's own wake-ups would not report to it.
pub(crate) const HELPER_PARK: Duration = Duration::from_millis(1);

/// How many rounds a pool thread spins (each twice as long as the last, up to crossbeam's
/// limit) before it parks in a join: about a microsecond in all.
const SPINS: usize = 7;

/// Blocks until `header` is complete.
///
/// On a pool thread it first runs the task itself if it is still queued near the top of
/// this thread's deque (`is_task` tells it). Otherwise it spins briefly (a wake-up costs
/// tens of microseconds here, far more than most tasks), then parks, on a pool thread
/// with a spare thread in its place meanwhile (see [`Idle`]); the completer wakes it.
///
/// With a `deadline`, gives up at that instant and returns `false`.
pub(crate) fn until_complete(
    header: &Header,
    deadline: Option<Instant>,
    is_task: &dyn Fn(&JobRef) -> bool,
) -> bool {
    // The task waiting here (if this is one) does not count against its strand's bound
    // while it waits, even while it runs the awaited task in place.
    let _slot = crate::strand::release_slot_while_waiting();
    // A task still queued on this very thread runs now: spinning first would only wait for
    // a thief to take it.
    if !header.is_complete() {
        pool::help_with(is_task);
    }
    let backoff = Backoff::new();
    if pool::on_worker() {
        // The task runs on another thread. Spin without yielding: a yield hands the core to
        // a thread that may be about to take this one's place anyway.
        for _ in 0..SPINS {
            if header.is_complete() {
                return true;
            }
            backoff.spin();
        }
    } else {
        while !backoff.is_completed() {
            if header.is_complete() {
                return true;
            }
            backoff.snooze();
        }
    }
    blocking_region(|| park_until_complete(header, deadline))
}

fn park_until_complete(header: &Header, deadline: Option<Instant>) -> bool {
    // The task was not queued near the top of this thread's deque (looked for above), and
    // nothing but this thread's own spawns and helping enter it: no need to look again.
    let mut idle = Idle::new(None);
    let mut registered = false;
    loop {
        if header.is_complete() {
            return true;
        }
        if idle.work() {
            continue;
        }
        if !registered {
            if !header.register(&state::thread_waker()) {
                return true;
            }
            registered = true;
            continue;
        }
        if !park(idle.park_limit(), deadline) {
            return header.is_complete();
        }
    }
}

/// What a thread that waits for tasks does instead of parking, and for how long it parks.
///
/// On a pool thread it runs what it waits for (`wanted`) while that is queued near the top
/// of its own deque, and nothing else: an unrelated task run on top of the waiting one could
/// be waiting for it in turn, and never see it resume. Once nothing wanted is there, it
/// has a spare thread take its place, which keeps the pool's parallelism and drains what
/// this thread leaves queued. Only while no spare can be had does it run any queued task, so
/// that the pool cannot starve.
///
/// A task that waits this way also releases its slot in its strand's bound while it waits
/// (see `strand::release_slot_while_waiting`).
pub(crate) struct Idle<'w> {
    wanted: Option<&'w dyn Fn(&JobRef) -> bool>,
    cover: Option<pool::BlockingCover>,
    /// Held for its drop: the waiting task's slot, released while it waits.
    _slot: Option<crate::strand::ReleasedSlot>,
}

impl<'w> Idle<'w> {
    pub(crate) fn new(wanted: Option<&'w dyn Fn(&JobRef) -> bool>) -> Self {
        Idle {
            wanted,
            cover: None,
            // From the start: what it waits for may run in place, on top of it.
            _slot: crate::strand::release_slot_while_waiting(),
        }
    }

    /// Does one thing in place of waiting; returns `true` if it did, so the caller looks
    /// again before parking.
    pub(crate) fn work(&mut self) -> bool {
        match &self.cover {
            None => {
                if let Some(wanted) = self.wanted
                    && pool::help_with(wanted)
                {
                    return true;
                }
                // What is wanted is not (or no longer) here, and a waiting thread puts no
                // task in its own deque (only a helping one would). Covering may take a
                // while (it can start a thread), so the caller looks again before parking.
                self.cover = Some(pool::cover_blocking());
                true
            }
            Some(cover) if cover.must_help() => {
                let again = pool::cover_blocking();
                if again.must_help() {
                    pool::help()
                } else {
                    self.cover = Some(again);
                    true
                }
            }
            Some(_) => false,
        }
    }

    /// How long to park at most before calling [`work`](Self::work) again: until woken,
    /// unless this thread helps with queued tasks, which nobody tells it about.
    pub(crate) fn park_limit(&self) -> Option<Duration> {
        let helping = self
            .cover
            .as_ref()
            .is_some_and(pool::BlockingCover::must_help);
        helping.then_some(HELPER_PARK)
    }
}

/// Waits until `done`, for a wait that some other thread ends by unparking this one (a
/// scope's last task, a join's thief): spins briefly, then parks, with a spare thread in
/// this one's place on a pool thread (see [`Idle`]; `wanted` is what it may run itself
/// meanwhile). `sleepy` is called once before the first park: it tells the waker that this
/// thread may park, and returns `false` if `done` came first.
pub(crate) fn until_unparked(
    done: &dyn Fn() -> bool,
    wanted: &dyn Fn(&JobRef) -> bool,
    mut sleepy: impl FnMut() -> bool,
) {
    let backoff = Backoff::new();
    while !backoff.is_completed() {
        if done() {
            return;
        }
        backoff.snooze();
    }
    blocking_region(|| {
        let mut idle = Idle::new(Some(wanted));
        let mut said = false;
        while !done() {
            if idle.work() {
                continue;
            }
            if !said {
                if !sleepy() {
                    return;
                }
                said = true;
                continue;
            }
            match idle.park_limit() {
                Some(limit) => thread::park_timeout(limit),
                None => thread::park(),
            }
        }
    });
}

/// Parks the current thread until unparked, for at most `limit` and never past `deadline`.
/// Returns `false` once the deadline has passed.
fn park(limit: Option<Duration>, deadline: Option<Instant>) -> bool {
    let limit = match deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            Some(limit.map_or(left, |limit| left.min(limit)))
        }
        None => limit,
    };
    match limit {
        Some(limit) => thread::park_timeout(limit),
        None => thread::park(),
    }
    true
}

impl StrandState {
    /// Admits a task, waiting for room if the strand is full (as a waiting task waits: a
    /// pool thread has a spare take its place, a coroutine worker hands on its other tasks,
    /// and a task releases its slot; see [`Idle`]).
    pub(crate) fn admit(&self) -> crate::Result<()> {
        if self.is_closed() {
            return Err(crate::Error::Shutdown);
        }
        if self.admission.try_admit()
            || blocking_region(|| {
                self.admission.admit(
                    || self.is_closed(),
                    &mut Patient::new(Idle::new(None), self),
                )
            })
        {
            self.recheck_closed()
        } else {
            Err(crate::Error::Shutdown)
        }
    }
}

/// How long a spawn may wait for room before it says so.
pub(crate) const SLOW_ADMISSION: Duration = Duration::from_secs(1);

/// Waits as `inner` does, and says once, through `tracing`, when the wait has lasted
/// [`SLOW_ADMISSION`]: a spawn that waits at the queue bound is silent otherwise, and
/// tasks that wait for tasks spawned after them deadlock there.
struct Patient<'a, W> {
    inner: W,
    since: Instant,
    warned: bool,
    strand: &'a StrandState,
}

impl<'a, W: Waiting> Patient<'a, W> {
    fn new(inner: W, strand: &'a StrandState) -> Self {
        Patient {
            inner,
            since: Instant::now(),
            warned: false,
            strand,
        }
    }
}

impl<W: Waiting> Waiting for Patient<'_, W> {
    fn work(&mut self) -> bool {
        let waited = self.since.elapsed();
        if !self.warned && waited >= SLOW_ADMISSION {
            self.warned = true;
            tracing::warn!(
                strand = self.strand.name(),
                bound = self.strand.admission.bound(),
                "a spawn has waited {waited:?} for room on the {} strand, which holds {} \
                 unfinished tasks (its queue bound); tasks that wait for tasks spawned after \
                 them can wait here for good: raise the bound with Builder::queue_bound, or \
                 use try_spawn to be refused at once",
                self.strand.name(),
                self.strand.admission.bound()
            );
        }
        self.inner.work()
    }

    fn park_limit(&self) -> Option<Duration> {
        let inner = self.inner.park_limit();
        if self.warned {
            return inner;
        }
        // Wake when the warning is due, to say it.
        let due = SLOW_ADMISSION
            .saturating_sub(self.since.elapsed())
            .max(Duration::from_millis(1));
        Some(inner.map_or(due, |limit| limit.min(due)))
    }
}

impl Waiting for Idle<'_> {
    fn work(&mut self) -> bool {
        Idle::work(self)
    }

    fn park_limit(&self) -> Option<Duration> {
        Idle::park_limit(self)
    }
}

/// Runs `f`, which blocks, so that it does not stall a coroutine worker: on one of plait's
/// coroutine threads, the worker's other tasks move to another thread first.
///
/// Only plait's own threads get this: on a thread of another tokio runtime, moving the
/// worker aside panics in some contexts (a current-thread runtime, a `LocalSet`) that cannot
/// be told apart from outside, so there `f` simply blocks.
pub(crate) fn blocking_region<R>(f: impl FnOnce() -> R) -> R {
    if crate::strand::on_coroutine_thread() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Aborts the process if dropped while unwinding: for waits that must not be cut short
/// while other threads may still use the frames an unwind would free. Disarm it with
/// `mem::forget`.
pub(crate) struct AbortOnUnwind(pub(crate) &'static str);

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "plait: a panic interrupted {}; aborting, as unwinding would free memory that running tasks still use",
                self.0
            );
            std::process::abort();
        }
    }
}

/// Drives `future` to completion on the current thread, parking between polls. With a
/// `deadline`, gives up at that instant and returns `None`. The caller wraps it in
/// [`blocking_region`] where needed.
///
/// On a pool thread it holds the thread, as any blocking call does: the future may wait for
/// something (a permit, a lock) that tasks hold while they run, and a spare thread per such
/// wait would only start more of them. Use [`block_on_tasks`] when the future waits only
/// for task handles.
pub(crate) fn block_on<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    drive(future, deadline, None)
}

/// [`block_on`] for a future that waits only for task handles: on a pool thread a spare
/// takes its place while it parks, as [`until_complete`] does.
pub(crate) fn block_on_tasks<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    drive(future, deadline, Some(Idle::new(None)))
}

fn drive<F: Future>(
    future: F,
    deadline: Option<Instant>,
    mut idle: Option<Idle<'_>>,
) -> Option<F::Output> {
    let mut future = pin!(future);
    let waker = state::thread_waker();
    let mut cx = Context::from_waker(&waker);
    // Each time the future is pending, poll it again a few times, spinning in between,
    // before parking: what it waits for is often a few hundred nanoseconds away, and a
    // park costs tens of microseconds.
    let mut backoff = Backoff::new();
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        if !backoff.is_completed() {
            backoff.snooze();
            continue;
        }
        if idle.as_mut().is_some_and(Idle::work) {
            continue;
        }
        backoff = Backoff::new();
        if !park(idle.as_ref().and_then(Idle::park_limit), deadline) {
            return None;
        }
    }
}
