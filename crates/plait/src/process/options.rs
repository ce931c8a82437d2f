//! [`ProcessOptions`]: how the process strand runs its workers.

use std::time::Duration;

use super::Task;
use crate::{Error, Result};

/// The default limit on one argument or result payload: 256 MiB.
pub const DEFAULT_PAYLOAD_LIMIT: usize = 256 << 20;

/// How the process strand runs its worker processes; given to
/// [`Builder::processes`](crate::Builder::processes).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use plait::process::ProcessOptions;
///
/// let options = ProcessOptions::new()
///     .workers(4)
///     .max_tasks_per_worker(1_000)    // recycle a worker after 1,000 tasks
///     .memory_limit(512 << 20)        // 512 MiB of address space per worker
///     .crash_retries(1)               // a task whose worker dies runs once more
///     .start_timeout(Duration::from_secs(5));
/// let rt = plait::Runtime::builder().processes(options).build()?;
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ProcessOptions {
    pub(crate) workers: Option<usize>,
    pub(crate) max_tasks_per_worker: Option<u64>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) payload_limit: usize,
    pub(crate) crash_retries: u32,
    pub(crate) start_timeout: Duration,
    pub(crate) pipeline_depth: usize,
    pub(crate) initializer: Option<(&'static str, Vec<u8>)>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions::new()
    }
}

impl ProcessOptions {
    /// The defaults: a worker per core, no recycling, no memory cap, a 256 MiB payload
    /// limit, no retries after a crash, 10 s for a worker to start.
    pub fn new() -> Self {
        ProcessOptions {
            workers: None,
            max_tasks_per_worker: None,
            memory_limit: None,
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            crash_retries: 0,
            start_timeout: Duration::from_secs(10),
            pipeline_depth: 32,
            initializer: None,
        }
    }

    /// Worker processes (default: one per available core). At least 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Replaces a worker with a fresh process after it has run `n` tasks (each item of a
    /// [`map_process`](crate::Runtime::map_process) counts): the cure for tasks that leak.
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n);
        self
    }

    /// Caps each worker's address space at `bytes` (`RLIMIT_AS`). A task that allocates
    /// past it fails with [`Error::MemoryLimit`] and the worker is replaced. The cap counts
    /// all the worker's mappings (code, libraries, stacks, the allocator's reserves), not
    /// only what tasks allocate: a small binary's worker starts at about 75 MiB of address
    /// space (measured here for a test binary), so give the tasks' needs plus about 128 MiB.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The largest argument or result one task may carry, in bytes (default
    /// [`DEFAULT_PAYLOAD_LIMIT`], at most 4 GiB less 1 MiB). Larger arguments are refused
    /// when the task is spawned, with [`Error::PayloadTooLarge`]; a larger result fails the
    /// task with [`Error::Codec`]; both name the limit.
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.payload_limit = bytes;
        self
    }

    /// How many more times a task runs after its worker dies under it (default 0: one
    /// attempt). The budget keeps a task that crashes its worker from crashing worker after
    /// worker: once it is spent the task fails with [`Error::WorkerLost`].
    ///
    /// Only the task the worker was running is charged, so a task that crashes its worker
    /// every time runs exactly `n + 1` times, under load too; the tasks queued behind it go
    /// to other workers uncharged. Tasks the worker had finished but whose answers it had
    /// not yet sent run again, uncharged (a few per crash: see the
    /// [module docs](crate::process)).
    pub fn crash_retries(mut self, n: u32) -> Self {
        self.crash_retries = n;
        self
    }

    /// How long a new worker may take to start and answer (default 10 s) before the strand
    /// gives up on it with [`Error::WorkerStart`].
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// Runs `task` with `args` in every worker before it serves (to open a connection or
    /// load a model once per process, like `ProcessPoolExecutor`'s initializer). If it
    /// panics, the worker does not start and the strand reports [`Error::WorkerStart`].
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `args` cannot be encoded.
    pub fn initializer<T: Task>(mut self, task: T, args: T::Args) -> Result<Self> {
        let _ = task;
        let bytes = postcard::to_allocvec(&args).map_err(|error| Error::Codec {
            task: T::NAME.to_owned(),
            reason: format!("the initializer's arguments could not be encoded: {error}"),
        })?;
        self.initializer = Some((T::NAME, bytes));
        Ok(self)
    }

    /// Checks the settings; fills in the worker count.
    pub(crate) fn validate(&self) -> Result<ProcessOptions> {
        let mut options = self.clone();
        let workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        options.workers = Some(workers);
        for (setting, value) in [
            ("workers", workers as u64),
            (
                "max_tasks_per_worker",
                self.max_tasks_per_worker.unwrap_or(1),
            ),
            ("payload_limit", self.payload_limit as u64),
            ("memory_limit", self.memory_limit.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(Error::Build {
                    reason: format!("ProcessOptions::{setting} is 0; it must be at least 1"),
                });
            }
        }
        // A frame's length is a u32, and a frame holds a payload and its header.
        let most = u32::MAX as usize - (1 << 20);
        if self.payload_limit > most {
            return Err(Error::Build {
                reason: format!(
                    "ProcessOptions::payload_limit is {} bytes; frames carry at most {most} bytes",
                    self.payload_limit,
                ),
            });
        }
        Ok(options)
    }

    pub(crate) fn worker_count(&self) -> usize {
        self.workers.unwrap_or(1)
    }
}
