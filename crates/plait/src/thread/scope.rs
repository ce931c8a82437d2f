//! Scoped tasks: thread-strand tasks that borrow from the caller's stack.

use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};

use super::ThreadStrand;
use super::role::WithRole;
use crate::Error;
use crate::pool::Pool;
use crate::pool::job::{JobRef, ScopeLatch};
use crate::task::handle::ThreadJoin;
use crate::task::raw::TaskRef;
use crate::task::wait;

/// The tasks of one [`Runtime::scope`](crate::Runtime::scope) call; passed to its closure.
///
/// `'scope` is how long data borrowed by the tasks must live: at least the whole `scope`
/// call.
pub struct Scope<'a, 'scope: 'a> {
    pool: &'a Pool,
    latch: &'a ScopeLatch,
    _scope: PhantomData<&'scope mut &'scope ()>,
}

impl ThreadStrand {
    /// Runs `op` with a scope whose tasks may borrow from the current stack, and returns
    /// once they have all finished; see `Runtime::scope`.
    pub(crate) fn scope<'scope, OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce(&Scope<'_, 'scope>) -> R,
    {
        let latch = ScopeLatch::new();
        let outcome = {
            let scope = Scope {
                pool: self.pool(),
                latch: &latch,
                _scope: PhantomData,
            };
            panic::catch_unwind(AssertUnwindSafe(|| op(&scope)))
        };
        // Even when `op` panicked: the tasks may borrow what our caller owns.
        latch.release_owner();
        wait_until_done(&latch);
        let result = outcome.unwrap_or_else(|payload| panic::resume_unwind(payload));
        if let Some(error) = latch.take_panic() {
            panic::resume_unwind(Box::new(panic_text(error)));
        }
        result
    }
}

/// Waits until every task of the scope is done and out of the pool.
///
/// It must not unwind before then (tasks may still borrow from the frames it would unwind
/// through), so an unexpected panic here aborts the process instead.
fn wait_until_done(latch: &ScopeLatch) {
    let bomb = wait::AbortOnUnwind("a scope's wait for its tasks");
    wait_until_finished(latch);
    std::mem::forget(bomb);
}

fn wait_until_finished(latch: &ScopeLatch) {
    // The last task unparks the owner, whose handle the latch took when it was made.
    wait::until_unparked(
        &|| latch.is_finished(),
        &|job| job.is_of_scope(latch),
        || true,
    );
}

impl<'a, 'scope: 'a> Scope<'a, 'scope> {
    /// Spawns a task that may borrow anything that outlives the scope.
    ///
    /// Scoped tasks do not count against the strand's queue bound: the scope itself bounds
    /// them, and they must all finish before it returns.
    pub fn spawn<F, T>(&self, f: F) -> ScopedHandle<'a, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        // SAFETY: spawns happen only while `op` runs (a `Scope` is only lent to it), and
        // `Runtime::scope` waits after `op` returns, neither returning nor unwinding before
        // the latch is finished, which the guard brings about only once the pool has dropped
        // the job (the entry takes the guard out of the core and drops it last): so the latch
        // outlives the guard, and nothing borrowed for `'scope` is used after the scope.
        let guard = unsafe { self.latch.guard() };
        // SAFETY: as above.
        let task = unsafe { TaskRef::queued_borrowing(WithRole::scoped(f, guard)) };
        self.pool.push(JobRef::task(task.job()));
        ScopedHandle {
            join: ThreadJoin::new(task),
            latch: self.latch,
        }
    }
}

fn panic_text(error: Error) -> String {
    match error {
        Error::Panicked { message } => message,
        other => other.to_string(),
    }
}

/// The result of one scoped task; see [`Runtime::scope`](crate::Runtime::scope).
///
/// It lives no longer than the scope's closure (`'a`). Dropping it detaches the task (the
/// scope still waits for it); if the task panics, the scope re-raises the panic.
pub struct ScopedHandle<'a, T> {
    join: ThreadJoin<'a, T>,
    latch: &'a ScopeLatch,
}

impl<T> ScopedHandle<'_, T> {
    /// Waits for the task and returns its result, as [`Handle::join`](crate::Handle::join)
    /// does.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`](crate::Error::Panicked) if the task panicked,
    /// [`Error::Cancelled`](crate::Error::Cancelled) if it was cancelled.
    pub fn join(mut self) -> crate::Result<T> {
        self.join
            .join(None)
            .unwrap_or_else(|| unreachable!("a wait without deadline never times out"))
    }

    /// Returns `true` once the task has finished.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Cancels the task, as [`Handle::cancel`](crate::Handle::cancel) does.
    pub fn cancel(&self) -> bool {
        self.join.cancel()
    }
}

impl<T> Drop for ScopedHandle<'_, T> {
    fn drop(&mut self) {
        if let Some(error) = self.join.detach() {
            self.latch.record(error);
        }
    }
}
