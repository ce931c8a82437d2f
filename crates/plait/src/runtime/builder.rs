//! [`Builder`]: how a [`Runtime`] is configured.

use std::sync::Arc;
use std::thread;

use super::{Runtime, Shared, current};
use crate::coroutine::CoroutineStrand;
use crate::process::{ProcessOptions, ProcessStrand};
use crate::thread::ThreadStrand;
use crate::{Error, Result};

/// The default bound on unfinished tasks per strand: large enough never to be felt by a
/// program that keeps its work in view, small enough that a runaway producer stops at about
/// a few hundred MiB rather than at the end of memory.
pub const DEFAULT_QUEUE_BOUND: usize = 1 << 20;

/// The most threads the thread strand takes (its sleep bookkeeping packs the counts).
const MAX_THREADS: usize = (1 << 16) - 1;

/// Configures and builds a [`Runtime`]; from [`Runtime::builder`].
///
/// # Examples
///
/// ```
/// let rt = plait::Runtime::builder()
///     .threads(4)
///     .coroutine_workers(2)
///     .queue_bound(10_000)
///     .thread_name("crunch")
///     .build()?;
/// assert_eq!(rt.threads(), 4);
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Builder does nothing until build"]
pub struct Builder {
    threads: Option<usize>,
    coroutine_workers: Option<usize>,
    queue_bound: usize,
    thread_stack_size: Option<usize>,
    thread_name: String,
    processes: ProcessOptions,
}

/// A validated configuration.
struct Config {
    threads: usize,
    coroutine_workers: usize,
    queue_bound: usize,
    thread_stack_size: Option<usize>,
    thread_name: String,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Builder {
            threads: None,
            coroutine_workers: None,
            queue_bound: DEFAULT_QUEUE_BOUND,
            thread_stack_size: None,
            thread_name: "plait".to_owned(),
            processes: ProcessOptions::new(),
        }
    }

    /// Threads of the thread strand (default: one per available core). At least 1, at most
    /// 65,535.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Worker threads of the coroutine strand (default: one per available core). At least
    /// 1. Coroutines that wait take no worker, so few workers serve many coroutines.
    pub fn coroutine_workers(mut self, n: usize) -> Self {
        self.coroutine_workers = Some(n);
        self
    }

    /// The most unfinished (queued or running) tasks each strand holds (default
    /// [`DEFAULT_QUEUE_BOUND`]). Past it, `spawn` waits for room and `try_spawn` hands the
    /// task back. At least 1: [`build`](Builder::build) fails on a bound of 0, with
    /// [`Error::Build`] naming the setting.
    ///
    /// A task that waits for other tasks (joins a handle, awaits one, ends a scope, or
    /// waits for room in a full strand) releases its slot while it waits. This keeps a shape
    /// from deadlocking: tasks that spawn children and join them, as many as the bound,
    /// would otherwise hold every slot while their children, or their children's children,
    /// wait for room that never comes. The strand then holds, beyond the bound, at most one
    /// task per task waiting for tasks at that moment; spawns from outside the strand's
    /// tasks wait for room as before, and `try_spawn` refuses.
    pub fn queue_bound(mut self, n: usize) -> Self {
        self.queue_bound = n;
        self
    }

    /// Stack size of the thread strand's threads, in bytes (default: the platform's, usually
    /// 2 MiB). Deeply recursive tasks, or tasks that join tasks thousands deep (each wait
    /// may run another task on the same stack), need more.
    pub fn thread_stack_size(mut self, bytes: usize) -> Self {
        self.thread_stack_size = Some(bytes);
        self
    }

    /// Prefix of the threads' names (default `plait`): pool threads are `PREFIX-0`, …,
    /// coroutine workers `PREFIX-io`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// How the process strand runs its worker processes (default:
    /// [`ProcessOptions::new`]). Workers start on the first process task, or at
    /// [`Runtime::start_processes`].
    pub fn processes(mut self, options: ProcessOptions) -> Self {
        self.processes = options;
        self
    }

    /// Starts the strands.
    ///
    /// # Errors
    ///
    /// [`Error::Build`] naming the setting, if a count or bound is zero, or if the operating
    /// system refuses to start the threads.
    pub fn build(&self) -> Result<Runtime> {
        let config = self.validate()?;
        let processes = self.processes.validate()?;
        let process_state = ProcessStrand::state(config.queue_bound);
        // Every strand thread learns its runtime as it starts (`Runtime::current`); the
        // runtime is put there once it exists, below.
        let home: current::Home = Arc::default();
        let settle: Arc<dyn Fn() + Send + Sync> = {
            let home = Arc::clone(&home);
            Arc::new(move || current::settle(&home))
        };
        let (coroutines, process_number) = CoroutineStrand::new(
            config.coroutine_workers,
            &config.thread_name,
            config.queue_bound,
            &process_state,
            Arc::clone(&settle),
        )?;
        let coroutines = Arc::new(coroutines);
        let threads = Arc::new(ThreadStrand::new(
            &crate::pool::Options {
                threads: config.threads,
                name: config.thread_name.clone(),
                stack_size: config.thread_stack_size,
                on_start: Some(settle),
            },
            config.queue_bound,
        )?);
        let processes = ProcessStrand::new(
            process_state,
            process_number,
            processes,
            Arc::clone(&coroutines),
        );
        let shared = Arc::new(Shared {
            auto: Arc::default(),
            threads,
            coroutines,
            processes: Arc::new(processes),
            closing: tokio::sync::watch::Sender::new(false),
            home: Arc::clone(&home),
        });
        let _ = home.set(Arc::downgrade(&shared));
        Ok(Runtime { shared })
    }

    fn validate(&self) -> Result<Config> {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        let config = Config {
            threads: self.threads.unwrap_or(cores),
            coroutine_workers: self.coroutine_workers.unwrap_or(cores),
            queue_bound: self.queue_bound,
            thread_stack_size: self.thread_stack_size,
            thread_name: self.thread_name.clone(),
        };
        for (setting, value) in [
            ("threads", config.threads),
            ("coroutine_workers", config.coroutine_workers),
            ("queue_bound", config.queue_bound),
        ] {
            if value == 0 {
                return Err(Error::Build {
                    reason: format!("Builder::{setting} is 0; it must be at least 1"),
                });
            }
        }
        if config.threads > MAX_THREADS {
            return Err(Error::Build {
                reason: format!(
                    "Builder::threads is {}; the thread strand takes at most {MAX_THREADS}",
                    config.threads
                ),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_settings_are_refused_by_name() {
        for builder in [
            Builder::new().threads(0),
            Builder::new().coroutine_workers(0),
            Builder::new().queue_bound(0),
        ] {
            let err = builder.build().unwrap_err();
            assert!(err.to_string().contains("must be at least 1"), "{err}");
        }
        let err = Builder::new().threads(0).build().unwrap_err();
        assert!(err.to_string().contains("Builder::threads"), "{err}");
        let err = Builder::new().threads(70_000).build().unwrap_err();
        assert!(err.to_string().contains("at most 65535"), "{err}");
    }
}
