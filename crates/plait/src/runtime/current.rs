//! The runtime a task runs on, found from inside it. Each thread of each strand (pool
//! threads and their spares, the coroutine strand's workers and blocking threads) learns
//! its runtime as it starts, through a `Home` the builder makes before the strands and
//! fills once the runtime exists. It holds the runtime weakly: a thread that outlives its
//! runtime finds none, and keeps nothing alive.

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};

use super::{Runtime, Shared};
use crate::id::TaskId;
use crate::{Error, Handle, Result};

/// Where a strand's threads find their runtime.
pub(crate) type Home = Arc<OnceLock<Weak<Shared>>>;

thread_local! {
    static HOME: RefCell<Option<Home>> = const { RefCell::new(None) };
}

/// Called on each strand thread as it starts.
pub(crate) fn settle(home: &Home) {
    HOME.with(|here| *here.borrow_mut() = Some(Arc::clone(home)));
}

/// Runs `f` with `home` as this thread's runtime (`Runtime::block_on` on a thread of the
/// caller's), then puts back what was there.
pub(crate) fn within<R>(home: &Home, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Home>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            HOME.with(|here| *here.borrow_mut() = before);
        }
    }
    let _restore = Restore(HOME.with(|here| here.borrow_mut().replace(Arc::clone(home))));
    f()
}

impl Runtime {
    /// The runtime this code runs on: inside a task or coroutine of any of its strands (or
    /// a thread they started, or a future in [`block_on`](Runtime::block_on)), without a
    /// `Runtime` moved into every closure.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside one: on a thread no runtime started (`main`, a thread
    /// of your own), or in a worker process of the process strand (a process of its own,
    /// with no runtime in it).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let nested = rt.spawn(|| {
    ///     // No clone of `rt` captured: the task finds its runtime.
    ///     let rt = plait::Runtime::current()?;
    ///     rt.spawn(|| 6 * 7).join()
    /// });
    /// assert_eq!(nested.join()??, 42);
    /// assert!(plait::Runtime::current().is_err(), "main is not a task");
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn current() -> Result<Runtime> {
        Runtime::try_current().ok_or(Error::NoRuntime)
    }

    /// [`current`](Runtime::current), as an `Option`.
    #[must_use]
    pub fn try_current() -> Option<Runtime> {
        HOME.with(|here| {
            let shared = here.borrow().as_ref()?.get()?.upgrade()?;
            Some(Runtime { shared })
        })
    }
}

/// Spawns `f` on the thread strand of the runtime this code runs on
/// ([`Runtime::current`]); outside one, the handle reports [`Error::NoRuntime`].
///
/// # Examples
///
/// ```
/// let rt = plait::Runtime::new()?;
/// let sum = rt.spawn(|| {
///     let halves = [plait::spawn(|| (1..=50u64).sum::<u64>()), plait::spawn(|| (51..=100u64).sum::<u64>())];
///     halves.into_iter().map(|h| h.join()).sum::<Result<u64, _>>()
/// });
/// assert_eq!(sum.join()??, 5050);
/// assert!(plait::spawn(|| 1).join().is_err(), "no runtime here");
/// # Ok::<(), plait::Error>(())
/// ```
pub fn spawn<F, T>(f: F) -> Handle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Runtime::try_current() {
        Some(rt) => rt.spawn(f),
        None => Handle::ready(TaskId::next(), Err(Error::NoRuntime)),
    }
}

/// Spawns `future` on the coroutine strand of the runtime this code runs on
/// ([`Runtime::current`]); outside one, the handle reports [`Error::NoRuntime`].
pub fn spawn_async<Fut>(future: Fut) -> Handle<Fut::Output>
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    match Runtime::try_current() {
        Some(rt) => rt.spawn_async(future),
        None => Handle::ready(TaskId::next(), Err(Error::NoRuntime)),
    }
}
