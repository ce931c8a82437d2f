//! The cores of thread tasks that are not admitted tasks: a scope's tasks, and the second
//! closure of a `join` made off the pool. Each is a task's core with its role in the pool
//! beside it, so that a queue entry is one pointer whatever it holds (an admitted task's
//! entry is its bare core).

use std::cell::UnsafeCell;

use crate::pool::job::{Job, Ran, Role, ScopeGuard, ScopeLatch};
use crate::task::core::{CancelTask, Core, Task};
use crate::task::state::{Header, Reason};
use crate::{Error, TaskId};

/// A core, and what its pool entry owes once it has run.
pub(crate) struct WithRole<F, T, R> {
    core: Core<F, T>,
    role: R,
}

/// A scope's task: its guard counts it done in the scope once the pool is finished with it.
pub(crate) struct Scoped(UnsafeCell<Option<ScopeGuard>>);

// SAFETY: the guard is only touched by whoever holds the task's one queue entry (to look at
// its scope, or to take it when the entry is run or dropped), one thread at a time.
unsafe impl Sync for Scoped {}

/// The second closure of a `join` made off the pool: its caller waits for it itself.
pub(crate) struct Joined;

/// What distinguishes the roles, for [`WithRole`]'s `Job` methods.
pub(crate) trait RoleData: Send + Sync {
    fn role(&self) -> Role;

    fn take_scope_guard(&self) -> Option<ScopeGuard> {
        None
    }

    fn is_of_scope(&self, _latch: &ScopeLatch) -> bool {
        false
    }
}

impl RoleData for Scoped {
    fn role(&self) -> Role {
        Role::Scoped
    }

    fn take_scope_guard(&self) -> Option<ScopeGuard> {
        // SAFETY: only the holder of the queue entry calls this (see `Sync` above).
        unsafe { (*self.0.get()).take() }
    }

    fn is_of_scope(&self, latch: &ScopeLatch) -> bool {
        // SAFETY: as above.
        unsafe { (*self.0.get()).as_ref() }.is_some_and(|guard| guard.is_of(latch))
    }
}

impl RoleData for Joined {
    fn role(&self) -> Role {
        Role::Joined
    }
}

impl<F, T> WithRole<F, T, Scoped>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    pub(crate) fn scoped(body: F, guard: ScopeGuard) -> Self {
        WithRole {
            core: Core::new(TaskId::next(), body),
            role: Scoped(UnsafeCell::new(Some(guard))),
        }
    }
}

impl<F, T> WithRole<F, T, Joined>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    pub(crate) fn joined(body: F) -> Self {
        WithRole {
            core: Core::new(TaskId::next(), body),
            role: Joined,
        }
    }
}

impl<F, T, R> Job for WithRole<F, T, R>
where
    F: FnOnce() -> T + Send,
    T: Send,
    R: RoleData,
{
    fn run(&self, strand_cancelled: &dyn Fn() -> bool) -> Ran {
        self.core.run(strand_cancelled)
    }

    fn id(&self) -> TaskId {
        self.core.header().id()
    }

    fn is_claimed(&self) -> bool {
        self.core.header().is_claimed()
    }

    fn role(&self) -> Role {
        self.role.role()
    }

    fn take_scope_guard(&self) -> Option<ScopeGuard> {
        self.role.take_scope_guard()
    }

    fn is_of_scope(&self, latch: &ScopeLatch) -> bool {
        self.role.is_of_scope(latch)
    }
}

impl<F, T, R> Task<T> for WithRole<F, T, R>
where
    F: FnOnce() -> T + Send,
    T: Send,
    R: RoleData,
{
    fn header(&self) -> &Header {
        self.core.header()
    }

    unsafe fn take_output(&self) -> Option<crate::Result<T>> {
        // SAFETY: the caller's contract is the core's.
        unsafe { self.core.take_output() }
    }

    unsafe fn take_unobserved_panic(&self) -> Option<Error> {
        // SAFETY: as above.
        unsafe { self.core.take_unobserved_panic() }
    }

    fn run_here(&self) {
        self.core.run_here();
    }
}

impl<F, T, R> CancelTask for WithRole<F, T, R>
where
    F: FnOnce() -> T + Send,
    T: Send,
    R: RoleData,
{
    fn cancel(&self, reason: Reason) -> bool {
        self.core.cancel(reason)
    }
}
