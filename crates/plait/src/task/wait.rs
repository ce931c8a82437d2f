//! Blocking until a task completes, without deadlocking the thread pool or stalling a
//! coroutine worker.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use super::state::{self, Header};
use crate::pool;

/// A pool thread that finds nothing to help with parks at most this long before it looks
/// again: a backstop for work that arrives while it parks, which the pool's own wake-ups
/// would not report to it.
pub(crate) const HELPER_PARK: Duration = Duration::from_millis(1);

/// Blocks until `header` is complete.
///
/// Spins briefly first (a wake-up costs tens of microseconds here, far more than most
/// tasks). On a pool thread it then runs other queued tasks while it waits, so that tasks
/// joining tasks never exhaust the pool; elsewhere it parks until the completer wakes it.
///
/// With a `deadline`, gives up at that instant and returns `false`.
pub(crate) fn until_complete(header: &Header, deadline: Option<Instant>) -> bool {
    let backoff = Backoff::new();
    while !backoff.is_completed() {
        if header.is_complete() {
            return true;
        }
        backoff.snooze();
    }
    blocking_region(|| park_until_complete(header, deadline))
}

fn park_until_complete(header: &Header, deadline: Option<Instant>) -> bool {
    let helper = pool::on_worker();
    let mut registered = false;
    loop {
        if header.is_complete() {
            return true;
        }
        if helper && pool::help() {
            continue;
        }
        if !registered {
            if !header.register(&state::thread_waker()) {
                return true;
            }
            registered = true;
            continue;
        }
        if !park(helper, deadline) {
            return header.is_complete();
        }
    }
}

/// Parks the current thread until unparked, for at most [`HELPER_PARK`] on a pool thread
/// and never past `deadline`. Returns `false` once the deadline has passed.
fn park(helper: bool, deadline: Option<Instant>) -> bool {
    let limit = match deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            Some(if helper { left.min(HELPER_PARK) } else { left })
        }
        None => helper.then_some(HELPER_PARK),
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
/// It does not help the pool: the future may wait for something (a permit, a lock) that a
/// task run in its place on this stack could never release. Use [`block_on_tasks`] when the
/// future waits only for task handles.
pub(crate) fn block_on<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    drive(future, deadline, false)
}

/// [`block_on`] for a future that waits only for task handles: on a pool thread it runs
/// queued tasks while the future is pending, for the same reason as [`until_complete`].
pub(crate) fn block_on_tasks<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    drive(future, deadline, pool::on_worker())
}

fn drive<F: Future>(future: F, deadline: Option<Instant>, helper: bool) -> Option<F::Output> {
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
        if helper && pool::help() {
            continue;
        }
        if !backoff.is_completed() {
            backoff.snooze();
            continue;
        }
        backoff = Backoff::new();
        if !park(helper, deadline) {
            return None;
        }
    }
}
