//! Which task the current thread is running, so the task can ask whether it should stop.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::state::{Header, Reason};
use crate::Error;

thread_local! {
    static CURRENT: Cell<Option<NonNull<Header>>> = const { Cell::new(None) };
    /// When the task running on this thread must stop, if it has a time limit.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The stop flag of the graph run whose node this thread is running, if any.
    static GRAPH: Cell<Option<NonNull<AtomicBool>>> = const { Cell::new(None) };
}

/// Marks a graph node as running on this thread until dropped, so that the node sees its
/// run's cancellation through [`is_cancelled`].
pub(crate) struct EnterGraph<'a> {
    previous: Option<NonNull<AtomicBool>>,
    /// The flag must outlive the guard: the pointer installed is read until it drops.
    _stopping: PhantomData<&'a AtomicBool>,
}

pub(crate) fn enter_graph(stopping: &AtomicBool) -> EnterGraph<'_> {
    EnterGraph {
        previous: GRAPH.with(|graph| graph.replace(Some(NonNull::from(stopping)))),
        _stopping: PhantomData,
    }
}

impl Drop for EnterGraph<'_> {
    fn drop(&mut self) {
        GRAPH.with(|graph| graph.set(self.previous));
    }
}

fn graph_stopping() -> bool {
    GRAPH.with(|graph| {
        graph.get().is_some_and(|stopping| {
            // SAFETY: installed by `enter_graph` from a reference that outlives its guard
            // (the guard borrows it), and guards drop in LIFO order on this thread, so the
            // pointer here is the innermost live guard's.
            unsafe { stopping.as_ref() }.load(Ordering::Acquire)
        })
    })
}

/// Marks a task as running on this thread until dropped; restores the task it interrupted
/// (a thread that waits runs the task it waits for in place: tasks inside tasks). The task
/// runs outside any graph node that it interrupted: that node's run stopping is not its
/// cancellation.
pub(crate) struct Enter {
    previous: Option<NonNull<Header>>,
    graph: Option<NonNull<AtomicBool>>,
    deadline: Option<Instant>,
    /// Nor is it part of a scheduler's loop that it interrupted (see [`SuspendHook`]):
    /// whether a loop was suspended, to be resumed.
    suspended: bool,
}

/// How a layer above tasks suspends its per-thread loop while a task runs on top of it,
/// and resumes it after: the graph scheduler's hand-over loop, which a task's body may
/// interrupt (a spawn that helps while it waits for room) and must not join.
pub(crate) struct SuspendHook {
    /// Suspends the loop running on this thread; `true` if one was running.
    pub(crate) suspend: fn() -> bool,
    /// Resumes what the last `suspend` that returned `true` suspended.
    pub(crate) resume: fn(),
}

static SUSPEND_HOOK: OnceLock<SuspendHook> = OnceLock::new();

/// Installs the hook (once: later calls are ignored). Called by the graph scheduler before
/// it hands any work over, so that no task can have started inside a hand-over without it.
pub(crate) fn install_suspend_hook(hook: SuspendHook) {
    let _ = SUSPEND_HOOK.set(hook);
}

pub(crate) fn enter(header: &Header) -> Enter {
    Enter {
        previous: CURRENT.with(|current| current.replace(Some(NonNull::from(header)))),
        graph: GRAPH.with(|graph| graph.replace(None)),
        deadline: DEADLINE.with(|deadline| deadline.replace(None)),
        suspended: SUSPEND_HOOK.get().is_some_and(|hook| (hook.suspend)()),
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
        GRAPH.with(|graph| graph.set(self.graph));
        DEADLINE.with(|deadline| deadline.set(self.deadline));
        if self.suspended
            && let Some(hook) = SUSPEND_HOOK.get()
        {
            (hook.resume)();
        }
    }
}

/// Runs the body of the task running on this thread under a time limit that starts now.
///
/// No timer is involved: [`is_cancelled`] compares the deadline with the clock, so a
/// cooperative task stops on time whatever else the runtime is doing, and a task that ends
/// past its deadline (returned or panicked, checking or not) is cancelled for it before it
/// completes, so that it reports [`Error::TimedOut`], never its late value.
pub(crate) fn with_time_limit<T>(limit: Duration, body: impl FnOnce() -> T) -> T {
    let Some(deadline) = Instant::now().checked_add(limit) else {
        return body(); // a limit past the end of time is none
    };
    let _limited = Limited(DEADLINE.with(|current| current.replace(Some(deadline))));
    body()
}

/// Restores the deadline it replaced; first, times out the current task if its own
/// deadline has passed.
struct Limited(Option<Instant>);

impl Drop for Limited {
    fn drop(&mut self) {
        past_deadline();
        DEADLINE.with(|deadline| deadline.set(self.0));
    }
}

/// Whether the current task's deadline has passed; if so, its task is cancelled for it.
fn past_deadline() -> bool {
    let passed = DEADLINE.with(|deadline| deadline.get().is_some_and(|at| Instant::now() >= at));
    if passed {
        CURRENT.with(|current| {
            if let Some(header) = current.get() {
                // SAFETY: as in `is_cancelled`: installed by `enter` from a header that
                // outlives its guard, and guards drop in LIFO order on this thread.
                unsafe { header.as_ref() }.cancel(Reason::TimedOut);
            }
        });
    }
    passed
}

/// Returns `true` if the task running on this thread has been asked to stop: by
/// [`Handle::cancel`](crate::Handle::cancel), a time limit, its task group, its graph run
/// stopping, or the runtime shutting down.
///
/// Thread-strand tasks cannot be stopped from outside (no thread can be safely killed), so
/// a long task should check this now and then and return early; whatever it returns is
/// discarded and its handle reports [`Error::Cancelled`] (or [`Error::TimedOut`]).
/// Coroutines need not check: they are dropped at their next `.await`. Outside a
/// thread-strand task this returns `false`.
///
/// # Examples
///
/// ```
/// let rt = plait::Runtime::new()?;
/// let handle = rt.spawn(|| {
///     let mut n = 0u64;
///     while !plait::task::is_cancelled() {
///         n += 1; // one slice of a long computation
///         std::hint::spin_loop();
///     }
///     n
/// });
/// assert!(handle.cancel());
/// assert!(handle.join().unwrap_err().is_cancelled());
/// # Ok::<(), plait::Error>(())
/// ```
#[must_use]
pub fn is_cancelled() -> bool {
    let own = CURRENT.with(|current| {
        current.get().is_some_and(|header| {
            // SAFETY: the pointer was installed by `enter` from a reference to a header that
            // the running task's worker keeps alive until the `Enter` guard is dropped, and
            // guards are dropped in LIFO order on this thread, so it is live here.
            unsafe { header.as_ref() }.is_cancelled()
        })
    });
    own || past_deadline() || graph_stopping() || crate::pool::strand_cancelling()
}

/// Returns `Err(Error::Cancelled)` if the current task has been asked to stop, for use with
/// `?` inside fallible task bodies; see [`is_cancelled`].
///
/// # Errors
///
/// [`Error::Cancelled`] when [`is_cancelled`] is `true`.
pub fn check_cancelled() -> crate::Result<()> {
    if is_cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}
