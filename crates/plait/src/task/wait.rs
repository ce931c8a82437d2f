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

/// A pool thread that helps with any queued task while it waits (because no spare thread
/// covers it) parks at most this long before it looks again: a backstop for work that
/// arrives while it parks, which the pool's own wake-ups would not report to it.
pub(crate) const HELPER_PARK: Duration = Duration::from_millis(1);

/// Blocks until `header` is complete.
///
/// Spins briefly first (a wake-up costs tens of microseconds here, far more than most
/// tasks). Then, on a pool thread, it runs the task itself if it is still queued near the
/// top of this thread's deque (`is_task` tells it), and otherwise lends its place to a
/// spare thread while it parks (see [`Idle`]); elsewhere it parks until the completer wakes
/// it.
///
/// With a `deadline`, gives up at that instant and returns `false`.
pub(crate) fn until_complete(
    header: &Header,
    deadline: Option<Instant>,
    is_task: &dyn Fn(&JobRef) -> bool,
) -> bool {
    let backoff = Backoff::new();
    while !backoff.is_completed() {
        if header.is_complete() {
            return true;
        }
        backoff.snooze();
    }
    blocking_region(|| park_until_complete(header, deadline, is_task))
}

fn park_until_complete(
    header: &Header,
    deadline: Option<Instant>,
    is_task: &dyn Fn(&JobRef) -> bool,
) -> bool {
    let mut idle = Idle::new(is_task, true);
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

/// What a waiting thread does instead of parking, and for how long it parks.
///
/// On a pool thread it runs what it waits for (`wanted`) if that is queued near the top of
/// its own deque, and nothing else: an unrelated task run on top of the waiting one could be
/// waiting for it in turn, and never see it resume. Once nothing wanted is there, it lends
/// its place to a spare thread, which keeps the pool's parallelism and drains what this
/// thread leaves queued; only if no spare can be had does it fall back to running any queued
/// task (where `may_help`), so that the pool cannot starve.
pub(crate) struct Idle<'w> {
    wanted: &'w dyn Fn(&JobRef) -> bool,
    may_help: bool,
    lent: Option<pool::Lent>,
}

impl<'w> Idle<'w> {
    /// `may_help`: whether running an unrelated task is safe enough as a last resort (it is
    /// not where the wait may be for something such a task could never release: a lock, a
    /// permit).
    pub(crate) fn new(wanted: &'w dyn Fn(&JobRef) -> bool, may_help: bool) -> Self {
        Idle {
            wanted,
            may_help,
            lent: None,
        }
    }

    /// Does one thing in place of waiting; returns `true` if it did, so the caller looks
    /// again before parking.
    pub(crate) fn work(&mut self) -> bool {
        if pool::help_with(self.wanted) {
            return true;
        }
        match &self.lent {
            None => {
                self.lent = Some(pool::lend_place());
                // Lending may take a while (it can start a thread): look again first.
                true
            }
            Some(lent) => self.may_help && lent.must_help() && pool::help(),
        }
    }

    /// How long to park at most before calling [`work`](Self::work) again: until woken,
    /// unless this thread helps with queued tasks, which nobody tells it about.
    pub(crate) fn park_limit(&self) -> Option<Duration> {
        let helping = self.may_help && self.lent.as_ref().is_some_and(pool::Lent::must_help);
        helping.then_some(HELPER_PARK)
    }
}

/// Wants nothing: for waits that are not for a thread-strand task.
pub(crate) fn nothing(_: &JobRef) -> bool {
    false
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

/// Runs `f`, which blocks, so that it does not stall a coroutine worker: on one of plait's
/// coroutine threads, the worker's other tasks move to another thread first.
///
/// Only plait's own threads get this: on a thread of another tokio runtime, moving the
/// worker aside panics in some contexts (a current-thread runtime, a `LocalSet`) that cannot
/// be told apart from outside, so there `f` simply blocks.
pub(crate) fn blocking_region<R>(f: impl FnOnce() -> R) -> R {
    if crate::coroutine::on_own_thread() {
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
/// On a pool thread it lends its place to a spare while it parks, but never runs a queued
/// task in its place: the future may wait for something (a permit, a lock) that a task run
/// on this stack could never release. Use [`block_on_tasks`] when the future waits only for
/// task handles.
pub(crate) fn block_on<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    drive(future, deadline, false)
}

/// [`block_on`] for a future that waits only for task handles: on a pool thread that no
/// spare covers, it runs queued tasks while the future is pending, for the same reason as
/// [`until_complete`].
pub(crate) fn block_on_tasks<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    drive(future, deadline, true)
}

fn drive<F: Future>(future: F, deadline: Option<Instant>, may_help: bool) -> Option<F::Output> {
    let mut future = pin!(future);
    let waker = state::thread_waker();
    let mut cx = Context::from_waker(&waker);
    let mut idle = Idle::new(&nothing, may_help);
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
        if idle.work() {
            continue;
        }
        backoff = Backoff::new();
        if !park(idle.park_limit(), deadline) {
            return None;
        }
    }
}
