//! Scoped tasks: thread-strand tasks that borrow from the caller's stack.

use std::marker::PhantomData;
use std::panic;
use std::sync::{Arc, Mutex, PoisonError};

use super::worker;
use crate::Runtime;
use crate::task::core::Core;
use crate::task::handle::ThreadJoin;
use crate::task::wait;

/// The tasks of one [`Runtime::scope`] call; passed to its closure.
///
/// `'scope` is how long data borrowed by the tasks must live: the whole `scope` call.
pub struct Scope<'a, 'scope> {
    rayon: &'a rayon_core::Scope<'scope>,
    panics: &'a Arc<ScopePanics>,
}

/// Panics of tasks whose handles were dropped after the task finished, to re-raise when
/// the scope ends (panics of tasks detached before they finish are re-raised by the pool's
/// own scope).
#[derive(Default)]
struct ScopePanics(Mutex<Option<String>>);

impl ScopePanics {
    fn record(&self, message: String) {
        let mut first = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(message);
    }

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl Runtime {
    /// Runs `op`, whose tasks may borrow from the current stack, and returns once every task
    /// spawned in the scope has finished.
    ///
    /// Each [`Scope::spawn`] returns a [`ScopedHandle`]: join it to get the task's result
    /// (or its panic, as [`Error::Panicked`](crate::Error::Panicked)).
    ///
    /// # Panics
    ///
    /// Like [`std::thread::scope`]: if a task panicked and its handle was dropped without
    /// being joined, the panic is re-raised here once all tasks have finished, so that it is
    /// not lost. A panic of `op` itself is also re-raised.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let mut data = vec![1u64, 2, 3, 4];
    /// let total: u64 = rt.scope(|s| {
    ///     let (left, right) = data.split_at_mut(2);
    ///     let a = s.spawn(|| { left.iter_mut().for_each(|x| *x *= 10); left.iter().sum::<u64>() });
    ///     let b = s.spawn(|| { right.iter_mut().for_each(|x| *x *= 10); right.iter().sum::<u64>() });
    ///     a.join().unwrap() + b.join().unwrap()
    /// });
    /// assert_eq!(total, 100);
    /// assert_eq!(data, [10, 20, 30, 40]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn scope<'scope, OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce(&Scope<'_, 'scope>) -> R + Send,
        R: Send,
    {
        let panics = Arc::new(ScopePanics::default());
        let result = wait::blocking_region(|| {
            self.thread_pool().scope(|rayon| {
                op(&Scope {
                    rayon,
                    panics: &panics,
                })
            })
        });
        if let Some(message) = panics.take() {
            panic::resume_unwind(Box::new(message));
        }
        result
    }
}

impl<'scope> Scope<'_, 'scope> {
    /// Spawns a task that may borrow anything that outlives the scope.
    ///
    /// Scoped tasks do not count against the strand's queue bound: the scope itself bounds
    /// them, and they must all finish before it returns.
    pub fn spawn<F, T>(&self, f: F) -> ScopedHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let core = Arc::new(Core::new(f));
        let task = Arc::clone(&core);
        self.rayon.spawn(move |_| {
            let ran = task.run(worker::strand_cancelling);
            if let Some(error) = ran.unobserved_panic {
                // The handle is gone: hand the panic to the pool's scope, which re-raises it
                // when the scope ends.
                panic::resume_unwind(Box::new(panic_text(error)));
            }
        });
        ScopedHandle {
            join: ThreadJoin::new(core),
            panics: Arc::clone(self.panics),
            _scope: PhantomData,
        }
    }
}

fn panic_text(error: crate::Error) -> String {
    match error {
        crate::Error::Panicked { message } => message,
        other => other.to_string(),
    }
}

/// The result of one scoped task; see [`Runtime::scope`].
///
/// Dropping it detaches the task (the scope still waits for it); if the task panics, the
/// scope re-raises the panic.
pub struct ScopedHandle<'scope, T> {
    join: ThreadJoin<'scope, T>,
    panics: Arc<ScopePanics>,
    _scope: PhantomData<&'scope ()>,
}

impl<T> ScopedHandle<'_, T> {
    /// Waits for the task and returns its result; runs other queued tasks meanwhile.
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
            self.panics.record(panic_text(error));
        }
    }
}
