//! [`TaskBuilder`]: a task with options.

use std::future::Future;
use std::time::Duration;

use crate::process::Task;
use crate::{Handle, Runtime};

/// Spawns one task with options; from [`Runtime::task`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = plait::Runtime::new()?;
/// let stuck = rt
///     .task()
///     .timeout(Duration::from_millis(20))
///     .spawn_async(std::future::pending::<()>());
/// assert!(stuck.join().unwrap_err().is_timeout());
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a TaskBuilder does nothing until spawn or spawn_async"]
pub struct TaskBuilder<'rt> {
    rt: &'rt Runtime,
    limit: Option<Duration>,
}

impl Runtime {
    /// Starts a [`TaskBuilder`], for a task with options.
    pub fn task(&self) -> TaskBuilder<'_> {
        TaskBuilder {
            rt: self,
            limit: None,
        }
    }
}

impl TaskBuilder<'_> {
    /// Limits how long the task may run, counted from when it starts.
    ///
    /// A coroutine is dropped at its next `.await` once the limit passes. A thread task is
    /// asked to stop: [`is_cancelled`](crate::task::is_cancelled) compares the clock with
    /// its deadline, so it turns `true` on time whatever the rest of the runtime is doing
    /// (no timer is involved); and a thread task that ends past its limit, checking or
    /// not, reports the limit rather than its late value. Either way the handle reports
    /// [`Error::TimedOut`](crate::Error::TimedOut).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Spawns `f` on the thread strand; see [`Runtime::spawn`].
    pub fn spawn<F, T>(self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.rt.spawn_thread(f, self.limit)
    }

    /// Runs `task` in a worker process; see [`Runtime::spawn_process`]. A time limit here
    /// is hard: past it the worker is killed (and replaced) and the handle reports
    /// [`Error::TimedOut`](crate::Error::TimedOut).
    pub fn spawn_process<T: Task>(self, task: T, args: T::Args) -> Handle<T::Output> {
        self.rt.spawn_process_with(task, args, self.limit)
    }

    /// Runs the task registered as `name` with JSON arguments in a worker process; see
    /// [`Runtime::spawn_process_json`]. A time limit here is hard, as for
    /// [`spawn_process`](TaskBuilder::spawn_process).
    pub fn spawn_process_json(self, name: &str, args: &str) -> Handle<String> {
        self.rt.spawn_process_json_with(name, args, self.limit)
    }

    /// Runs the task registered as `name` with encoded arguments in a worker process;
    /// see [`Runtime::spawn_process_by_name`]. A time limit here is hard, as for
    /// [`spawn_process`](TaskBuilder::spawn_process).
    pub fn spawn_process_by_name(
        self,
        name: &str,
        args: crate::process::EncodedArgs,
    ) -> Handle<Vec<u8>> {
        self.rt.spawn_process_by_name_with(name, args, self.limit)
    }

    /// Spawns `future` on the coroutine strand; see [`Runtime::spawn_async`].
    pub fn spawn_async<Fut>(self, future: Fut) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.rt.spawn_coroutine(future, self.limit)
    }
}
