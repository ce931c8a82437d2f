//! The process strand's part of [`Runtime`]: registered tasks in worker processes, and
//! commands (see [`process`](crate::process)).

use std::time::Duration;

use crate::process::{
    Command, CommandOutput, EncodedArgs, MapProcess, MapProcessUnordered, Task, command, map,
};
use crate::{Error, Handle, Result, Runtime};

impl Runtime {
    /// Runs the registered `task` with `args` in a worker process and returns a handle to
    /// its result: the same [`Handle`](crate::Handle) as [`spawn`](Runtime::spawn) and
    /// [`spawn_async`](Runtime::spawn_async) return.
    ///
    /// The first process task starts the workers (see
    /// [`start_processes`](Runtime::start_processes) to start them ahead). Tasks queue
    /// when every worker is busy; the strand's [queue bound](crate::Builder::queue_bound)
    /// applies as on the other strands. Cancelling a task a worker is running kills that
    /// worker (a new one takes its place). See the [module docs](crate::process) for what
    /// each kind of failure reports.
    ///
    /// # Examples
    ///
    /// ```
    /// #[plait::task]
    /// fn checksum(data: Vec<u8>) -> u32 {
    ///     data.iter().map(|&b| u32::from(b)).sum()
    /// }
    ///
    /// fn main() -> plait::Result<()> {
    ///     plait::init();
    ///     let rt = plait::Runtime::new()?;
    ///     let sum = rt.spawn_process(checksum::task(), vec![1, 2, 3]);
    ///     assert_eq!(sum.join()?, 6);
    ///     Ok(())
    /// }
    /// ```
    pub fn spawn_process<T: Task>(&self, task: T, args: T::Args) -> Handle<T::Output> {
        self.spawn_process_with(task, args, None)
    }

    pub(crate) fn spawn_process_with<T: Task>(
        &self,
        task: T,
        args: T::Args,
        timeout: Option<Duration>,
    ) -> Handle<T::Output> {
        let _ = task;
        self.shared.processes.spawn::<T>(args, timeout)
    }

    /// Runs the task registered as `name` with arguments already encoded and returns its
    /// encoded result (`postcard`): the way in for work that arrives by name, as from a
    /// job file or a queue.
    ///
    /// # Errors
    ///
    /// The handle reports [`Error::UnknownTask`](crate::Error::UnknownTask), with the registered names closest to
    /// `name`, if no task has that name; [`Error::Codec`](crate::Error::Codec) if `args` were encoded from
    /// another type than the task takes (by [their type's name](EncodedArgs), checked here)
    /// or do not decode as it in the worker, leftover bytes included;
    /// [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge) if `args` is over the payload limit; otherwise as for
    /// [`spawn_process`](Runtime::spawn_process).
    ///
    /// # Examples
    ///
    /// ```
    /// #[plait::task]
    /// fn add(a: i64, b: i64) -> i64 {
    ///     a + b
    /// }
    ///
    /// fn main() -> plait::Result<()> {
    ///     plait::init();
    ///     let rt = plait::Runtime::new()?;
    ///     let name = <add as plait::process::Task>::NAME;
    ///     let args = plait::process::EncodedArgs::encode(&(2_i64, 3_i64))?;
    ///     let sum = rt.spawn_process_by_name(name, args).join()?;
    ///     assert_eq!(postcard::from_bytes::<i64>(&sum).unwrap(), 5);
    ///
    ///     // Arguments of another type are refused before they reach a worker.
    ///     let wrong = plait::process::EncodedArgs::encode(&"five".to_owned())?;
    ///     let err = rt.spawn_process_by_name(name, wrong).join().unwrap_err();
    ///     assert!(err.to_string().contains("encoded as `alloc::string::String`"), "{err}");
    ///     Ok(())
    /// }
    /// ```
    pub fn spawn_process_by_name(&self, name: &str, args: EncodedArgs) -> Handle<Vec<u8>> {
        self.spawn_process_by_name_with(name, args, None)
    }

    /// Runs the task registered as `name` with its arguments as JSON (several as a JSON
    /// array) and returns its result as JSON: the way in for work that arrives by name as
    /// text, as from a queue or another language. The task runs in a worker process as
    /// [`spawn_process`](Runtime::spawn_process) runs it; the JSON is read and written
    /// here.
    ///
    /// # Errors
    ///
    /// The handle reports [`Error::UnknownTask`](crate::Error::UnknownTask) if no task has
    /// that name; [`Error::Codec`](crate::Error::Codec) if the arguments are not JSON of
    /// the task's argument type (the message names the type), or the result does not
    /// write as JSON; otherwise as for [`spawn_process`](Runtime::spawn_process).
    ///
    /// # Examples
    ///
    /// ```
    /// #[plait::task(name = "math.add", version = 2)]
    /// fn add(a: i64, b: i64) -> i64 {
    ///     a + b
    /// }
    ///
    /// fn main() -> plait::Result<()> {
    ///     plait::init();
    ///     let rt = plait::Runtime::new()?;
    ///     assert_eq!(plait::process::task_version("math.add"), Some(2));
    ///     assert_eq!(rt.spawn_process_json("math.add", "[2, 3]").join()?, "5");
    ///     let err = rt.spawn_process_json("math.add", r#""five""#).join().unwrap_err();
    ///     assert!(err.to_string().contains("(i64, i64)"), "{err}");
    ///     Ok(())
    /// }
    /// ```
    pub fn spawn_process_json(&self, name: &str, args: &str) -> Handle<String> {
        self.shared.processes.spawn_json(name, args, None)
    }

    /// [`spawn_process_json`](Runtime::spawn_process_json) with a hard time limit.
    pub(crate) fn spawn_process_json_with(
        &self,
        name: &str,
        args: &str,
        timeout: Option<Duration>,
    ) -> Handle<String> {
        self.shared.processes.spawn_json(name, args, timeout)
    }

    /// [`spawn_process_by_name`](Runtime::spawn_process_by_name) with a hard time limit.
    pub(crate) fn spawn_process_by_name_with(
        &self,
        name: &str,
        args: EncodedArgs,
        timeout: Option<Duration>,
    ) -> Handle<Vec<u8>> {
        self.shared.processes.spawn_by_name(name, args, timeout)
    }

    /// Starts the worker processes now, rather than on the first process task, and waits
    /// until every one serves.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerStart`](crate::Error::WorkerStart) if a worker does not start (most often: the program does not
    /// call [`plait::init`](crate::init) first thing in `main`); [`Error::Shutdown`](crate::Error::Shutdown) after a
    /// shutdown.
    pub fn start_processes(&self) -> Result<()> {
        self.shared.processes.start()
    }

    /// The number of worker processes of the process strand (started or not).
    #[must_use]
    pub fn process_workers(&self) -> usize {
        self.shared.processes.workers()
    }

    /// How many worker processes the process strand has started so far, replacements for
    /// crashed, timed-out and recycled workers included: a gauge for monitoring.
    #[must_use]
    pub fn process_workers_started(&self) -> usize {
        self.shared.processes.workers_started()
    }

    /// Runs `task` on every item in worker processes and yields the results **in input
    /// order**.
    ///
    /// Lazy and bounded like [`map`](Runtime::map): items are taken from `items` only as
    /// room frees up, a few chunks per worker. Tiny tasks are batched automatically. An
    /// item whose arguments are over the payload limit yields its error in its place; the
    /// others run. Dropping the iterator cancels the chunks in flight.
    ///
    /// An item that crashes its worker is charged alone, against its own
    /// [`crash_retries`](crate::process::ProcessOptions::crash_retries): it runs exactly
    /// `crash_retries + 1` times if it crashes every time. A chunk's results travel
    /// together, so the items of its chunk that ran before it run again (uncharged); make
    /// items with side effects idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// #[plait::task]
    /// fn collatz_steps(mut n: u64) -> u32 {
    ///     let mut steps = 0;
    ///     while n != 1 {
    ///         n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
    ///         steps += 1;
    ///     }
    ///     steps
    /// }
    ///
    /// fn main() -> plait::Result<()> {
    ///     plait::init();
    ///     let rt = plait::Runtime::new()?;
    ///     let steps: Vec<u32> = rt
    ///         .map_process(collatz_steps::task(), 1..100_000u64)
    ///         .collect::<plait::Result<_>>()?;
    ///     assert_eq!(steps[26], 111); // 27 takes 111 steps
    ///     Ok(())
    /// }
    /// ```
    pub fn map_process<T, I>(&self, task: T, items: I) -> MapProcess<T, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T::Args>,
    {
        map::map_process(&self.shared.processes, task, items)
    }

    /// Like [`map_process`](Runtime::map_process), but yields results **as they
    /// complete**, each with its item's index in the input.
    pub fn map_process_unordered<T, I>(
        &self,
        task: T,
        items: I,
    ) -> MapProcessUnordered<T, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T::Args>,
    {
        map::map_process_unordered(&self.shared.processes, task, items)
    }

    /// Runs `command` and returns a handle to its output: exit status, captured standard
    /// output and error (up to [`output_limit`](Command::output_limit) each), and whether
    /// its time limit killed it. The command runs in its own process group; a time limit,
    /// a cancellation or the runtime's shutdown kills the whole group, so that nothing it
    /// started outlives it.
    ///
    /// A command that runs and fails is not an error: check
    /// [`success`](CommandOutput::success). One that cannot start is: the handle reports
    /// [`Error::Failed`](crate::Error::Failed) with a [`CommandError`](crate::process::CommandError) naming the program and the reason.
    pub fn spawn_command(&self, command: Command) -> Handle<CommandOutput> {
        self.shared
            .coroutines
            .spawn_fallible(async move { command::run(command).await.map_err(Error::failed) })
    }
}
